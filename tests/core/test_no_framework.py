"""The core imports and works with no deep-learning framework importable."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import importlib.abc, sys
BLOCKED = {"torch", "jax", "jaxlib", "tensorflow", "deepspeed", "flax", "optax", "numpy"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked for this test: {name}")
        return None
sys.meta_path.insert(0, Block())
import pkgutil, importlib, traincheck_core, traincheck
mods = [m.name for m in pkgutil.walk_packages(traincheck_core.__path__, "traincheck_core.")
        if not m.name.endswith("__main__") and ".bootstrap.site" not in m.name]
for m in mods:
    importlib.import_module(m)
leaked = sorted(k for k in sys.modules if k.split(".")[0] in BLOCKED)
assert not leaked, leaked
print(len(mods))
"""


def test_core_imports_without_frameworks() -> None:
    res = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) >= 10


def test_cli_help_without_frameworks() -> None:
    code = BLOCKER.split("import pkgutil")[0] + (
        "import sys\nfrom traincheck_core.cli.main import main\n"
        "sys.argv=['traincheck','--help']\nmain()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "usage: traincheck" in res.stdout
