"""Invariants and their file format (JSON Lines, one invariant per line).

The first line of a file is a header object ``{"traincheck_invariants": SCHEMA, ...}``; every
other line is one :class:`Invariant`. Loading a file of another schema version is an error,
never a silent "no invariant triggered".
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import msgspec

from .errors import InvariantFileError

__all__ = ["INVARIANT_SCHEMA", "Clause", "Precondition", "Invariant", "Violation",
           "invariant_id", "load_invariants", "write_invariants"]

INVARIANT_SCHEMA = 1

ClauseKind = Literal["constant", "consistent", "unequal", "present", "absent", "not_in"]


class Clause(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One condition on a field of an example.

    ``constant``: the field takes one of ``values``; ``consistent``: the field is equal across
    the items of one example (e.g. both sides of a pair); ``unequal``: pairwise different
    across the items; ``present`` / ``absent``: the field exists / does not; ``not_in``: the
    field, when present, takes none of ``values`` (named exceptions, e.g. variables).
    """

    kind: ClauseKind
    field: str
    values: list[Any] = []


class Precondition(msgspec.Struct, kw_only=True, omit_defaults=True):
    """OR of ANDs of clauses, optionally inverted. An empty ``any_of`` means "always"."""

    any_of: list[list[Clause]] = []
    inverted: bool = False


class Invariant(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A rule learned from reference runs."""

    id: str
    relation: str
    params: dict[str, Any]
    precondition: Precondition = msgspec.field(default_factory=Precondition)
    text: str = ""  # readable statement
    hint: str = ""  # likely causes when it is violated
    support: dict[str, int] = {}  # e.g. {"positive": 120, "negative": 4, "runs": 3}
    runs: list[str] = []  # run ids that support it
    frameworks: dict[str, list[str]] = {}  # framework versions seen in those runs


class Violation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One observed breach of an invariant."""

    invariant: str  # invariant id
    relation: str
    message: str  # one readable line: what was expected, what happened
    step: int | None = None
    rank: int | None = None
    source: str | None = None  # trace file or process
    t: int = 0
    expected: Any = None
    observed: Any = None
    hint: str = ""
    loc: str | None = None  # file:line in user code
    evidence: list[dict[str, Any]] = []
    # online only: when the training process reported it (the event clock, like ``t``), so
    # ``reported_t - t`` is how long the user waited for it
    reported_t: int = 0


def invariant_id(relation: str, params: dict[str, Any], precondition: Precondition) -> str:
    """A stable id: the same relation, parameters and precondition give the same id."""
    blob = msgspec.json.encode({"r": relation, "p": params, "c": precondition}, order="sorted")
    return f"{relation}-{hashlib.sha1(blob).hexdigest()[:12]}"


_DEC = msgspec.json.Decoder(Invariant)


def load_invariants(path: str | os.PathLike[str]) -> list[Invariant]:
    """Read an invariants file; :class:`InvariantFileError` names the file and line on error."""
    p = Path(path)
    try:
        lines = p.read_bytes().splitlines()
    except OSError as exc:
        raise InvariantFileError(f"cannot read invariants file {p}: {exc.strerror}") from None
    if not lines or not lines[0].strip():
        raise InvariantFileError(f"{p}: empty file, not a traincheck invariants file")
    try:
        head = msgspec.json.decode(lines[0])
    except msgspec.DecodeError:
        head = None
    if not isinstance(head, dict) or "traincheck_invariants" not in head:
        raise InvariantFileError(f"{p}:1: not a traincheck invariants file (no header line); "
                                 "create one with `traincheck infer`")
    if head["traincheck_invariants"] != INVARIANT_SCHEMA:
        raise InvariantFileError(
            f"{p}: invariants schema {head['traincheck_invariants']} is not supported by this "
            f"traincheck (schema {INVARIANT_SCHEMA}); re-run `traincheck infer`")
    out: list[Invariant] = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            out.append(_DEC.decode(line))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvariantFileError(f"{p}:{n}: malformed invariant: {exc}") from None
    return out


def write_invariants(path: str | os.PathLike[str], invariants: list[Invariant],
                     meta: dict[str, Any] | None = None) -> None:
    """Write invariants sorted by id, one per line, deterministically (atomic replace)."""
    p = Path(path)
    enc = msgspec.json.Encoder(order="sorted")
    head = {"traincheck_invariants": INVARIANT_SCHEMA, **(meta or {})}
    body = [enc.encode(head)] + [enc.encode(i) for i in sorted(invariants, key=lambda i: i.id)]
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(b"\n".join(body) + b"\n")
    os.replace(tmp, p)
