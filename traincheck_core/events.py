"""The event schema: every record a trace file holds, as one tagged union.

Events are small ``msgspec.Struct`` types encoded as msgpack arrays (``array_like``) so a
trace stays compact; the tag (field ``k``) selects the type. Add new fields only at the end
and with a default, and bump :data:`SCHEMA_VERSION` when a change is not backward compatible.

Meta variables (step, epoch, stage, rank, ...) are not repeated on every event: a
:class:`MetaUpdate` carries the keys that changed, and a consumer folds them per process in
file order (see :class:`traincheck_core.MetaTracker`).
"""

from __future__ import annotations

from typing import Union

import msgspec

__all__ = [
    "SCHEMA_VERSION",
    "Scalar",
    "TensorSummary",
    "SeqSummary",
    "MapSummary",
    "ObjSummary",
    "Summary",
    "AttrValue",
    "MetaValue",
    "Header",
    "CallStart",
    "CallReturn",
    "CallError",
    "VarState",
    "MetaUpdate",
    "Footer",
    "Event",
    "EVENT_TYPES",
]

#: Version of the trace schema, written into every :class:`Header`.
SCHEMA_VERSION = 1

# A variable attribute: scalars verbatim, shapes as lists of ints, fingerprints as hex strings.
AttrValue = Union[None, bool, int, float, str, list[int]]
# A meta variable value (step, stage, rank, mesh coordinates, user marks).
MetaValue = Union[None, bool, int, float, str, list[int]]


class _Struct(msgspec.Struct, array_like=True, tag_field="k", omit_defaults=False):
    """Base for every encoded struct: array-encoded, tagged by ``k``."""


# ----------------------------------------------------------------------------- summaries


class Scalar(_Struct, tag="s"):
    """A small scalar or short string, kept verbatim."""

    v: Union[None, bool, int, float, str]


class TensorSummary(_Struct, tag="t"):
    """A tensor-like value: never the data, only what identifies it.

    ``fp`` is a content fingerprint covering every element and its position (``None`` when
    the adapter could not or chose not to compute it). ``extra`` holds adapter-specific small
    facts (``requires_grad``, ``is_leaf``, sharding, ...).
    """

    type: str
    shape: list[int]
    dtype: str
    device: str
    fp: Union[str, None] = None
    extra: dict[str, AttrValue] = {}


class SeqSummary(_Struct, tag="l"):
    """A list/tuple/set: its length ``n`` and at most a bounded number of leading items."""

    type: str
    n: int
    items: list[Summary] = []


class MapSummary(_Struct, tag="m"):
    """A mapping: its length ``n`` and at most a bounded number of items (keys as strings)."""

    type: str
    n: int
    items: dict[str, Summary] = {}


class ObjSummary(_Struct, tag="o"):
    """Any other object: its qualified type name and, optionally, a few summarized attributes."""

    type: str
    attrs: dict[str, Summary] = {}


Summary = Union[Scalar, TensorSummary, SeqSummary, MapSummary, ObjSummary]

# ----------------------------------------------------------------------------- events


class Header(_Struct, tag="header"):
    """First record of every trace file: who wrote it, where, with which versions.

    Never holds environment variables, tokens or other secrets: ``argv`` is the program's
    command line as the user typed it.
    """

    schema: int
    run_id: str
    host: str
    pid: int
    ppid: int
    rank: Union[int, None]
    world_size: Union[int, None]
    local_rank: Union[int, None]
    python: str
    traincheck: str
    frameworks: dict[str, str]
    plugins: dict[str, str]
    argv: list[str]
    started: float  # wall-clock seconds since the epoch, for humans only
    t: int  # monotonic nanoseconds at the same instant, the clock of every other event


class CallStart(_Struct, tag="call"):
    """An instrumented API was called.

    ``id`` links the start to its :class:`CallReturn` or :class:`CallError`; ``parent`` is the
    id of the innermost instrumented call still running on the same thread (0 for none).
    ``loc`` is ``file:line`` of the call site in user code, when the adapter could tell.
    """

    t: int
    id: int
    parent: int
    api: str
    thread: int
    args: dict[str, Summary] = {}
    loc: Union[str, None] = None


class CallReturn(_Struct, tag="ret"):
    """The call ``id`` returned; ``ret`` summarizes the return value when it was kept."""

    t: int
    id: int
    ret: Union[Summary, None] = None


class CallError(_Struct, tag="err"):
    """The call ``id`` raised ``exc_type`` (the exception still reaches the caller)."""

    t: int
    id: int
    exc_type: str
    message: str


class VarState(_Struct, tag="var"):
    """The observed state of a tracked variable.

    ``name`` is stable across runs and ranks (``model.fc1.weight``, ``params/Dense_0/kernel``).
    ``attrs`` are flat: ``data`` and ``grad`` hold fingerprints (``grad`` is ``None`` when
    there is no gradient), next to ``dtype``, ``shape``, ``device``, ``requires_grad``, ...
    ``call`` is the id of the instrumented call across which the variable reached this state
    (0 when it was first seen or observed outside any call).
    """

    t: int
    name: str
    vtype: str
    attrs: dict[str, AttrValue]
    call: int = 0


class MetaUpdate(_Struct, tag="meta"):
    """Meta variables that changed (step, epoch, stage, rank, world_size, user marks, ...)."""

    t: int
    values: dict[str, MetaValue]


class Footer(_Struct, tag="end"):
    """Last record of a cleanly closed trace: how many events preceded it and why it closed."""

    t: int
    events: int
    reason: str


Event = Union[Header, CallStart, CallReturn, CallError, VarState, MetaUpdate, Footer]
EVENT_TYPES: tuple[type, ...] = (
    Header,
    CallStart,
    CallReturn,
    CallError,
    VarState,
    MetaUpdate,
    Footer,
)
