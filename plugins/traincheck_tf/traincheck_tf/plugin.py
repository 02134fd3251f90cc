"""Entry point of the TensorFlow adapter. TensorFlow is imported lazily, never at module level."""

from __future__ import annotations

import importlib.metadata as md

from traincheck_core import hookimpl

TRAINCHECK_REQUIRES = ("tensorflow>=2.15 | tensorflow-cpu>=2.15",)


@hookimpl
def traincheck_framework_versions() -> dict[str, str]:
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return {dist: md.version(dist)}
        except md.PackageNotFoundError:
            continue
    return {}
