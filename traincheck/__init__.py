"""User-facing shortcuts: ``import traincheck; traincheck.annotate(stage="eval")``.

``import traincheck.auto`` at the top of a training script traces it (and every process it
starts) without changing the launcher; configure it with ``TRAINCHECK_*`` variables or
``traincheck.toml``.
"""

from traincheck_core import __version__, annotate, get_session

__all__ = ["__version__", "annotate", "get_session"]
