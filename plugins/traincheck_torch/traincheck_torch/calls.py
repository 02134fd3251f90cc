"""Call events: ids, parent links, user call sites, per-thread stacks of running calls."""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
from threading import get_ident
from typing import Any

from traincheck_core import CallError, CallReturn, CallStart, Session, Summary

__all__ = ["CallTracer", "user_call_site"]

_internal: dict[str, bool] = {}
_prefixes: tuple[str, ...] | None = None


def _internal_prefixes() -> tuple[str, ...]:
    global _prefixes
    if _prefixes is None:
        import torch
        import wrapt

        import traincheck_core

        paths = [os.path.dirname(m.__file__ or "") for m in (torch, traincheck_core, wrapt)]
        paths.append(os.path.dirname(__file__))
        paths.append(sysconfig.get_paths()["stdlib"])
        _prefixes = tuple(p + os.sep for p in paths if p)
    return _prefixes


def _is_internal(filename: str) -> bool:
    try:
        return _internal[filename]
    except KeyError:
        v = filename.startswith("<") or filename.startswith(_internal_prefixes())
        _internal[filename] = v
        return v


def user_frames(depth: int = 1, limit: int = 4):
    """Up to ``limit`` frames of user code (not torch, traincheck, wrapt or the stdlib)."""
    f: Any = sys._getframe(depth)
    n = 0
    while f is not None and n < limit:
        if not _is_internal(f.f_code.co_filename):
            n += 1
            yield f
        f = f.f_back


def user_call_site() -> str | None:
    """``file:line`` of the innermost user-code frame on this thread's stack."""
    for f in user_frames(2, 1):
        return f"{f.f_code.co_filename}:{f.f_lineno}"
    return None


class CallTracer:
    """Emits CallStart/CallReturn/CallError. A per-thread stack of ``(id, api, key)`` tells
    the parent of a new call and whether it is top-level (gets a ``loc``)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._tls = threading.local()

    def stack(self) -> list[tuple[int, str, int]]:
        try:
            return self._tls.stack
        except AttributeError:
            s = self._tls.stack = []
            return s

    def top_api(self) -> str | None:
        s = self.stack()
        return s[-1][1] if s else None

    def start(self, api: str, args: dict[str, Summary], key: int = 0,
              stack: list[tuple[int, str, int]] | None = None) -> int:
        """Emit a CallStart for ``api`` and push it; ``key`` identifies the call's object so
        that a later :meth:`pop` can find it (hooks have no other link from pre to post).
        ``stack``: this thread's :meth:`stack`, when the caller has it already."""
        s = self.session
        if stack is None:
            stack = self.stack()
        cid = s.next_call_id()
        if stack:
            parent, loc = stack[-1][0], None
        else:
            parent, loc = 0, user_call_site()
        s.emit(CallStart(t=s.now(), id=cid, parent=parent, api=api, thread=get_ident(),
                         args=args, loc=loc))
        stack.append((cid, api, key))
        return cid

    def pop(self, api: str, key: int = 0, stack: list[tuple[int, str, int]] | None = None
            ) -> int:
        """Pop the innermost running call of ``api`` on ``key`` (0: not found). Calls above it
        that never ended (their post hook did not run) are dropped."""
        if stack is None:
            stack = self.stack()
        top = stack[-1] if stack else None
        if top is not None and top[1] == api and top[2] == key:  # the usual case
            stack.pop()
            return top[0]
        for i in range(len(stack) - 1, -1, -1):
            cid, a, k = stack[i]
            if a == api and k == key:
                del stack[i:]
                return cid
        return 0

    def end(self, cid: int, ret: Summary | None = None) -> None:
        s = self.session
        s.emit(CallReturn(t=s.now(), id=cid, ret=ret))

    def error(self, cid: int, exc: BaseException) -> None:
        s = self.session
        s.emit(CallError(t=s.now(), id=cid, exc_type=type(exc).__name__,
                         message=str(exc)[:200]))
