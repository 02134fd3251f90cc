"""Preconditions: when does a hypothesis hold? Deterministic, stateless, no thresholds.

An *example* is a tuple of *rows*; a row is a sorted tuple of ``(field, value)`` pairs built from
meta variables, API arguments, variable attributes and active contexts (:func:`make_row`). A
hypothesis has positive examples (it held) and negative ones (it did not). Its precondition is
an OR of ANDs of :class:`~traincheck_core.invariants.Clause` that is true on every positive and
false on every negative. If no such formula exists (nor an inverted one that captures exactly
the negatives), the hypothesis is dropped: there is no statistical threshold.

The search (:func:`infer_precondition`) is a pure function of its inputs: candidate clauses are
the ones true on every positive, a greedy set cover (ties broken by a fixed order) picks the
fewest clauses that reject every negative, and when one AND is not enough the positives are
split by the values of one field (fewest values first), one AND per part; the first split that
describes any of its parts wins, even when other parts stay uncovered, and beats an inverted
formula (soundness only needs every negative rejected; an inverted formula generalizes to
anything the reference runs never showed).

Identity-like fields (pids, thread ids, object ids, timestamps, run ids, hosts, source
locations, byte sizes, raw step/epoch numbers, content fingerprints, floats) never enter a row:
they separate examples in the reference run and then never match again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from .events import MapSummary, ObjSummary, Scalar, SeqSummary, Summary, TensorSummary
from .invariants import Clause, Precondition

__all__ = ["Row", "Example", "IDENTITY_FIELDS", "FINGERPRINT_ATTRS", "is_identity", "make_row",
           "meta_fields", "arg_fields", "var_fields", "call_fields", "infer_precondition",
           "infer_with_exceptions", "holds", "describe", "NAME_FIELD", "MAX_EXCEPTIONS",
           "RowCache", "merge_rows"]

Row = tuple[tuple[str, Any], ...]
Example = tuple[Row, ...]

#: Field name segments that identify a process, object, instant or place rather than a state.
IDENTITY_FIELDS = frozenset({
    "pid", "ppid", "tid", "thread", "thread_id", "id", "ids", "obj_id", "t", "t0", "t1", "time",
    "timestamp", "started", "run_id", "host", "hostname", "loc", "file", "line", "bytes",
    "nbytes", "size_bytes", "ptr", "data_ptr", "address", "step", "epoch", "iteration",
    "global_step", "fp", "seed", "local_rank", "source",
})
#: Variable attributes that hold content fingerprints: only their presence enters a row.
FINGERPRINT_ATTRS = frozenset({"data", "grad", "fp"})
#: The field holding a variable's stable name; see :func:`infer_with_exceptions`.
NAME_FIELD = "var.name"
_MAX_CONSTANTS = 3  # a "constant" clause lists at most this many values
MAX_EXCEPTIONS = 8  # variables an invariant may name as exceptions
_MAX_SPLIT = 4  # OR over at most this many parts
_KIND_ORDER = {"present": 0, "absent": 1, "constant": 2, "consistent": 3, "unequal": 4,
               "not_in": 5}


@lru_cache(maxsize=65536)
def is_identity(field: str) -> bool:
    """True when ``field`` (dotted) names an identity-like value that must never be a clause."""
    return field.rsplit(".", 1)[-1] in IDENTITY_FIELDS


def _norm(value: Any) -> Any:
    """A hashable, precondition-worthy value, or None to leave the field out."""
    t = type(value)
    if t is bool or t is int:
        return value  # the common cases first: this runs for every field of every row
    if value is None or t is float:
        return None
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, str, bool)) for v in value):
            return tuple(value)
        return None
    if isinstance(value, str) and len(value) >= 16 and all(c in "0123456789abcdef" for c in value):
        return None  # looks like a fingerprint or an id
    if isinstance(value, (bool, int, str)):
        return value
    return None


def make_row(fields: Mapping[str, Any]) -> Row:
    """The row for ``fields``: identity fields and unusable values removed, sorted by name."""
    out = []
    for k, v in fields.items():
        if is_identity(k):
            continue
        n = _norm(v)
        if n is not None:
            out.append((k, n))
    out.sort(key=lambda kv: kv[0])
    return tuple(out)


class RowCache:
    """Rows of variable states, memoized by the identity of the attribute dict.

    Analysis records share one attribute dict per observed state (a ``VarChange``'s ``after``
    is the same object as the state a later ``StepEnd`` holds), so a template that reads the
    same state many times (every call while it is current, every step end) builds its row
    once. The cache keeps a reference to each dict it answers for, so an id is never reused
    while cached; it is cleared when full, which bounds its memory.
    """

    def __init__(self, limit: int = 1 << 16) -> None:
        self.limit = limit
        self._rows: dict[int, tuple[Any, Any, Any, Row]] = {}

    def var_row(self, attrs: Mapping[str, Any], vtype: str | None = None,
                name: str | None = None) -> Row:
        hit = self._rows.get(id(attrs))
        if hit is not None and hit[0] is attrs and hit[1] == vtype and hit[2] == name:
            return hit[3]
        row = make_row(var_fields(attrs, vtype, name))
        if len(self._rows) >= self.limit:
            self._rows.clear()
        self._rows[id(attrs)] = (attrs, vtype, name, row)
        return row


def merge_rows(*rows: Row) -> Row:
    """One row from rows with disjoint fields (concatenated: rows are compared only with
    rows built the same way, so a fixed order is all equality needs)."""
    return tuple(kv for r in rows for kv in r)


def meta_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {f"meta.{k}": v for k, v in meta.items()}


def _summary_fields(prefix: str, s: Summary, out: dict[str, Any], depth: int) -> None:
    if isinstance(s, Scalar):
        out[prefix] = s.v
    elif isinstance(s, TensorSummary):
        out[f"{prefix}.type"] = s.type
        out[f"{prefix}.dtype"] = s.dtype
        out[f"{prefix}.shape"] = s.shape
        out[f"{prefix}.device"] = s.device
        for k, v in s.extra.items():
            out[f"{prefix}.{k}"] = v
    elif isinstance(s, ObjSummary):
        out[f"{prefix}.type"] = s.type
        if depth > 0:
            for k, sub in s.attrs.items():
                _summary_fields(f"{prefix}.{k}", sub, out, depth - 1)
    elif isinstance(s, (SeqSummary, MapSummary)):
        out[f"{prefix}.type"] = s.type


def arg_fields(args: Mapping[str, Summary], prefix: str = "arg") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, s in args.items():
        _summary_fields(f"{prefix}.{name}", s, out, 1)
    return out


def var_fields(attrs: Mapping[str, Any], vtype: str | None = None,
               name: str | None = None) -> dict[str, Any]:
    """Variable attributes as fields; fingerprints count only as present (not None) or not.
    ``name`` is the variable's stable name (``model.fc.weight``): the same in every run and on
    every rank, unlike pids or object ids, so it may name the exceptions of an invariant."""
    out: dict[str, Any] = {}
    if vtype is not None:
        out["var.vtype"] = vtype
    if name is not None:
        out[NAME_FIELD] = name
    for k, v in attrs.items():
        if k in FINGERPRINT_ATTRS:
            if v is not None:
                out[f"var.{k}"] = True
        else:
            out[f"var.{k}"] = v
    return out


def call_fields(call: Any, ancestors: Iterable[str] = ()) -> dict[str, Any]:
    """Fields of a :class:`~traincheck_core.analysis.CallRecord`: meta at its start, its
    arguments, and the instrumented calls it runs inside (``within:<api>``)."""
    out = meta_fields(call.meta)
    out.update(arg_fields(call.args))
    for a in ancestors:
        out[f"within:{a}"] = True
    return out


# ----------------------------------------------------------------------------- evaluation


def _clause_holds(c: Clause, ex: Example, values: frozenset | None = None) -> bool:
    f = c.field
    got = [dict(r).get(f) for r in ex]
    if c.kind == "not_in":
        vals = values if values is not None else frozenset(_norm_clause_value(v)
                                                           for v in c.values)
        return all(g not in vals for g in got if g is not None)
    if c.kind == "absent":
        return all(g is None for g in got)
    if any(g is None for g in got):
        return False
    if c.kind == "present":
        return True
    if c.kind == "constant":
        vals = values if values is not None else frozenset(_norm_clause_value(v)
                                                           for v in c.values)
        return all(g in vals for g in got)
    if c.kind == "consistent":
        return len(set(got)) == 1
    if c.kind == "unequal":
        return len(set(got)) == len(got)
    return False


def _norm_clause_value(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def holds(pre: Precondition, ex: Example) -> bool:
    """Whether the precondition is true on example ``ex`` (a tuple of rows)."""
    if not pre.any_of:
        ok = True
    else:
        ok = any(all(_clause_holds(c, ex) for c in conj) for conj in pre.any_of)
    return ok != pre.inverted


# ----------------------------------------------------------------------------- search


def _candidates(pos: list[Example], negs: list[Example]) -> list[Clause]:
    """Every clause true on all of ``pos``, in a fixed order."""
    multi = any(len(ex) > 1 for ex in pos)
    fields: dict[str, list[Any]] = {}
    for ex in pos:
        for r in ex:
            for k, v in r:
                fields.setdefault(k, []).append(v)
    nrows = sum(len(ex) for ex in pos)
    out: list[Clause] = []
    for f in sorted(fields):
        vals = fields[f]
        if len(vals) != nrows:
            continue
        out.append(Clause(kind="present", field=f))
        distinct = sorted(set(vals), key=repr)
        if len(distinct) <= _MAX_CONSTANTS:
            out.append(Clause(kind="constant", field=f,
                              values=[list(v) if isinstance(v, tuple) else v for v in distinct]))
        if multi:
            per = [[dict(r).get(f) for r in ex] for ex in pos]
            if all(len(set(p)) == 1 for p in per):
                out.append(Clause(kind="consistent", field=f))
            if all(len(set(p)) == len(p) for p in per):
                out.append(Clause(kind="unequal", field=f))
    neg_fields = sorted({k for ex in negs for r in ex for k, _ in r} - set(fields))
    out += [Clause(kind="absent", field=f) for f in neg_fields]
    out.sort(key=lambda c: (_KIND_ORDER[c.kind], _field_rank(c.field), c.field))
    return out


def _field_rank(field: str) -> int:
    """Among equally good clauses prefer the ones that generalize: meta variables and variable
    state first, then the receiver's attributes, then enclosing calls, then other arguments
    (shapes of inputs change with the batch size)."""
    for i, p in enumerate(("meta.", "var.", "arg.self.", "within:")):
        if field.startswith(p):
            return i
    return 4


def _cover(pos: list[Example], negs: list[Example], leftover: set[int] | None = None
           ) -> list[Clause] | None:
    """Fewest clauses (greedy) true on every positive and, together, false on every negative.
    With ``leftover``, the negatives no clause rejects are put there instead of failing."""
    cands = _candidates(pos, negs)
    rejects = []
    for c in cands:
        vals = (frozenset(_norm_clause_value(v) for v in c.values)
                if c.kind == "constant" else None)
        rejects.append({i for i, ex in enumerate(negs) if not _clause_holds(c, ex, vals)})
    left = set(range(len(negs)))
    chosen: list[Clause] = []
    while left:
        best, gain = -1, 0
        for i, r in enumerate(rejects):
            g = len(r & left)
            if g > gain:
                best, gain = i, g
        if best < 0:
            if leftover is None:
                return None
            leftover |= left
            return chosen
        chosen.append(cands[best])
        left -= rejects[best]
    return chosen


def _split_fields(pos: list[Example]) -> list[str]:
    """Fields present in every row of every positive, with 2.._MAX_SPLIT values: the ways to
    split the positives into parts, fewest parts first."""
    counts: dict[str, set] = {}
    nrows = sum(len(ex) for ex in pos)
    seen: Counter = Counter()
    for ex in pos:
        for r in ex:
            for k, v in r:
                seen[k] += 1
                counts.setdefault(k, set()).add(v)
    ok = [f for f, vs in counts.items() if seen[f] == nrows and 2 <= len(vs) <= _MAX_SPLIT]
    return sorted(ok, key=lambda f: (len(counts[f]), f))


def _search(pos: list[Example], negs: list[Example], partial: bool = False
            ) -> list[list[Clause]] | None:
    """An OR of ANDs true on every positive and false on every negative.

    With ``partial``, the first split (fewest parts first) that describes *any* of its parts
    wins, leaving the positives of the other parts uncovered: soundness only needs every
    negative rejected, and a split into few parts ("when it has a gradient") generalizes where
    a complete split into many ("when shape = [3, 64] or [4, 1, 3, 3] or ...") only lists what
    the reference run happened to contain.
    """
    if not pos:
        return None
    if not negs:
        return []
    one = _cover(pos, negs)
    if one is not None:
        return [one]
    for f in _split_fields(pos):
        parts: dict[Any, list[Example]] = {}
        for ex in pos:
            parts.setdefault(tuple(sorted({dict(r)[f] for r in ex}, key=repr)), []).append(ex)
        ands, full = [], True
        for key in sorted(parts, key=repr):
            conj = _cover(parts[key], negs)
            if conj is None:
                full = False
                if not partial:
                    break
                continue
            ands.append(conj)
        if full or (partial and ands):
            return ands
    return None


def infer_precondition(pos: Mapping[Example, int] | Iterable[Example],
                       neg: Mapping[Example, int] | Iterable[Example]) -> Precondition | None:
    """A precondition separating the positive from the negative examples, or None.

    Examples may be given with counts (a ``Counter``); only distinct examples matter. An empty
    precondition (always) is returned when there are no negatives. When no formula over the
    positives works, one over the negatives is tried and returned inverted.
    """
    p = sorted(set(pos), key=repr)
    n = sorted(set(neg), key=repr)
    if not p:
        return None
    if set(p) & set(n):
        return None  # the same example both held and failed: nothing can separate them
    # Rather a precondition that describes part of the positives ("when it has a gradient")
    # than an inverted one ("unless <the negatives' look>"): an inverted one holds on every
    # kind of example the reference runs never showed, which is where false alarms come from.
    found = _search(p, n, partial=True)
    if found is not None:
        return Precondition(any_of=[c for c in found if c] if found else [])
    inv = _search(n, p)
    if inv:
        return Precondition(any_of=inv, inverted=True)
    return None


def _name_of(ex: Example) -> Any:
    got = {dict(r).get(NAME_FIELD) for r in ex}
    return got.pop() if len(got) == 1 else None


def _strip(examples: Mapping[Example, int]) -> Counter:
    out: Counter = Counter()
    for ex, n in examples.items():
        out[tuple(tuple(kv for kv in r if kv[0] != NAME_FIELD) for r in ex)] += n
    return out


def infer_with_exceptions(pos: Mapping[Example, int], neg: Mapping[Example, int]
                          ) -> Precondition | None:
    """A precondition for examples that carry a variable's stable name (``var.name``).

    Names are a last resort inside a formula ("when name = a or b" only lists what the
    reference run contained), so the search first ignores them. A real model can hold a
    variable that the rule does not fit *by itself*: a conv bias right before a batch norm gets
    a numerically zero gradient, so the optimizer step leaves it bit-identical on some steps or
    on all of them, although it looks exactly like the parameters that do change. One such
    variable would kill "the step changes every parameter that has a gradient" for all the
    others. So, when nothing separates the examples, the negatives that the best single
    conjunction over the positives cannot reject are taken as *named exceptions*: their
    variables' examples are left out, the search runs again, and the precondition gets a
    ``not_in var.name`` clause listing them. This is a scope, not a threshold: at most
    :data:`MAX_EXCEPTIONS` names, fewer than the variables the invariant still covers, and
    every remaining example is separated exactly. Only when that fails too are names used as
    an ordinary field.
    """
    sp, sn = _strip(pos), _strip(neg)
    pre = infer_precondition(sp, sn)
    if pre is not None:
        return pre
    pre = _with_exceptions(pos, neg, sp, sn)
    return pre if pre is not None else infer_precondition(pos, neg)


def _with_exceptions(pos: Mapping[Example, int], neg: Mapping[Example, int], sp: Counter,
                     sn: Counter) -> Precondition | None:
    p = sorted(sp, key=repr)
    n = sorted(set(sn) - set(sp), key=repr)  # a stripped row on both sides is never rejected
    left: set[int] = set()
    if _cover(p, n, left) is None:
        return None
    unrejected = {n[i] for i in left} | (set(sn) & set(sp))
    bad: set[Any] = set()
    for ex in neg:
        if _strip({ex: 1}).keys() & unrejected:
            name = _name_of(ex)
            if name is None:
                return None  # a conflict that no variable name explains
            bad.add(name)
    if not bad or len(bad) > MAX_EXCEPTIONS:
        return None
    keep_pos = {ex: c for ex, c in pos.items() if _name_of(ex) not in bad}
    keep_neg = {ex: c for ex, c in neg.items() if _name_of(ex) not in bad}
    if len({_name_of(ex) for ex in keep_pos}) <= len(bad):
        return None
    found = infer_precondition(_strip(keep_pos), _strip(keep_neg))
    if found is None or found.inverted:
        return None
    clause = Clause(kind="not_in", field=NAME_FIELD, values=sorted(bad, key=repr))
    return Precondition(any_of=[c + [clause] for c in found.any_of] or [[clause]])


# ----------------------------------------------------------------------------- text

_PHRASES = {("present", "var.grad"): "it has a gradient",
            ("absent", "var.grad"): "it has no gradient"}


def _field_name(f: str) -> str:
    for p in ("meta.", "var.", "arg."):
        if f.startswith(p):
            return f[len(p):]
    return f


def _clause_text(c: Clause) -> str:
    if (c.kind, c.field) in _PHRASES:
        return _PHRASES[(c.kind, c.field)]
    name = _field_name(c.field)
    if c.kind == "not_in":
        vals = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in c.values)
        return f"{name} is not {vals}" if len(c.values) == 1 else f"{name} is none of {vals}"
    if c.kind == "present":
        return f"{name} is set"
    if c.kind == "absent":
        return f"{name} is not set"
    if c.kind == "constant":
        vals = " or ".join(repr(v) if isinstance(v, str) else str(v) for v in c.values)
        return f"{name} = {vals}"
    if c.kind == "consistent":
        return f"{name} is the same on all sides"
    return f"{name} differs on every side"


def describe(pre: Precondition) -> str:
    """A short readable condition ("" when the precondition is "always")."""
    if not pre.any_of:
        return "never" if pre.inverted else ""
    ors = [" and ".join(_clause_text(c) for c in conj) for conj in pre.any_of]
    text = ors[0] if len(ors) == 1 else " or ".join(f"({o})" for o in ors)
    return f"unless {text}" if pre.inverted else f"when {text}"
