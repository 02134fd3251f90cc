"""Entry point of the DeepSpeed adapter. DeepSpeed is imported lazily, never at module level."""

from __future__ import annotations

import importlib.metadata as md

from traincheck_core import hookimpl

TRAINCHECK_REQUIRES = ("deepspeed>=0.14",)


@hookimpl
def traincheck_framework_versions() -> dict[str, str]:
    try:
        return {"deepspeed": md.version("deepspeed")}
    except md.PackageNotFoundError:
        return {}
