"""The hooks a traincheck plugin may implement.

Every hook is a lifecycle or extension point, called a handful of times per process; none is
called per event. Adapters put their per-event work behind the callables they install and
emit events straight to :meth:`traincheck_core.Session.emit`.

A plugin is a module (or object) with functions named like these hooks and decorated with
:data:`traincheck_core.hookimpl`, registered under the entry-point group ``traincheck.plugins``.
The module may declare ``TRAINCHECK_REQUIRES = ("torch>=2.1", ...)``: requirement strings
checked against installed distributions *before* any hook runs, so a plugin whose framework
is missing or too old is skipped with a one-line reason. Keep framework imports inside the
hooks, never at module level, so that listing plugins stays cheap and safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    from ..config import Config
    from ..session import InstrumentationPlan, Session

hookspec = pluggy.HookspecMarker("traincheck")
hookimpl = pluggy.HookimplMarker("traincheck")


@hookspec
def traincheck_add_options(group: argparse._ArgumentGroup) -> None:
    """Add command-line options for ``traincheck run`` to ``group``.

    Values reach :func:`traincheck_configure` as ``config.options[dest]`` in every process of
    the run (they travel to child processes inside the serialized config). Use ``dest`` names
    prefixed with the plugin name (``torch_track``) to avoid clashes.
    """


@hookspec
def traincheck_framework_versions() -> dict[str, str]:
    """Return ``{distribution: version}`` of the frameworks this plugin found.

    Called once per process when the trace header is written, and by ``traincheck plugins``.
    """
    raise NotImplementedError


@hookspec
def traincheck_configure(config: Config) -> None:
    """Validate and take in the configuration, before any session starts.

    Raise :class:`traincheck_core.UsageError` for an invalid plugin option.
    """


@hookspec
def traincheck_value_summarizers() -> dict[Any, Any]:
    """Return ``{type or 'module.QualName': callable(value) -> Summary}``.

    Called once per session; the summarizers are then looked up by the core's summary registry
    on the hot path. Keyed by name, a summarizer does not force its framework to be imported.
    """
    raise NotImplementedError


@hookspec
def traincheck_session_start(session: Session) -> None:
    """A session started in this process (the trace header is written).

    The place to emit initial meta variables (rank, world size) with ``session.set_meta``.
    """


@hookspec
def traincheck_instrument(session: Session, plan: InstrumentationPlan) -> None:
    """Install instrumentation according to ``plan``.

    ``plan.full`` asks for everything the adapter can observe; otherwise ``plan.apis``,
    ``plan.variables`` and ``plan.attributes`` name what the deployed invariants need, and
    ``plan.content_mode(attr, static)`` says whether a variable's fingerprint attribute
    (``data``, ``grad``) is compared at every observation, only at step ends, or not at all
    (then any fixed token for "set" will do). Must be idempotent (a second call changes
    nothing) and fail open: an error here is logged and the plugin is disabled, the user's
    program still runs.
    """


@hookspec
def traincheck_uninstrument(session: Session) -> None:
    """Undo everything :func:`traincheck_instrument` installed. Idempotent."""


@hookspec
def traincheck_relation_templates() -> list[Any]:
    """Return extra relation templates (:class:`traincheck_core.relations.Relation` instances)
    that inference may hypothesize and the checker may check."""
    raise NotImplementedError


@hookspec
def traincheck_invariant_libraries() -> list[str]:
    """Return paths of invariant files (JSON Lines) this plugin ships, pre-inferred for its
    framework; ``traincheck check --library`` and ``run --library`` use them."""
    raise NotImplementedError


@hookspec
def traincheck_violation(violation: Any, session: Session | None) -> None:
    """A violation was found (online, or offline with ``session`` ``None``).

    Violation sinks (a webhook, a metrics system, an alert) implement this. Violations are rare,
    so this may do real work; it must not raise.
    """


@hookspec
def traincheck_session_finish(session: Session, reason: str) -> None:
    """The session is closing (``reason``: ``exit``, ``signal:SIGTERM``, ...): flush your own
    state. The trace is closed after this returns."""


@hookspec
def traincheck_api_catalog() -> list[str]:
    """Return the canonical names of the APIs this plugin can instrument, resolved against the
    installed framework (``traincheck apis`` prints them). May import the framework."""
    raise NotImplementedError  # a specification only; plugins implement it
