"""Fold :class:`~traincheck_core.events.MetaUpdate` events into the current meta variables."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .events import Header, MetaUpdate, MetaValue
from .trace.reader import Record

__all__ = ["MetaTracker", "with_meta", "STANDARD_META"]

#: Meta variable names with a shared meaning across adapters.
STANDARD_META = (
    "step",  # optimizer steps completed before this point (0-based), per process
    "epoch",
    "stage",  # "train" | "eval" | "inference" | user-defined
    "rank",
    "local_rank",
    "world_size",
    "dp_rank",
    "tp_rank",
    "pp_rank",
)


class MetaTracker:
    """Current meta variables of every process (trace source) in a merged stream."""

    def __init__(self) -> None:
        self._by_source: dict[int, dict[str, MetaValue]] = {}

    def observe(self, rec: Record) -> dict[str, MetaValue]:
        """Update from ``rec`` and return the meta of its process (do not mutate it)."""
        meta = self._by_source.get(rec.source)
        if meta is None:
            meta = self._by_source[rec.source] = {}
        ev = rec.event
        if isinstance(ev, MetaUpdate):
            meta = self._by_source[rec.source] = {**meta, **ev.values}
        elif isinstance(ev, Header):
            base = {"rank": ev.rank, "world_size": ev.world_size, "local_rank": ev.local_rank}
            meta = self._by_source[rec.source] = {**base, **meta}
        return meta

    def get(self, source: int) -> dict[str, MetaValue]:
        return self._by_source.get(source, {})


def with_meta(records: Iterable[Record]) -> Iterator[tuple[Record, dict[str, MetaValue]]]:
    """Pair each record with its process's meta variables as of that record."""
    tracker = MetaTracker()
    for rec in records:
        yield rec, tracker.observe(rec)
