"""Plugin host: a third-party plugin installed with pip is discovered, selected, configured
through its own options, and a plugin whose framework is missing is skipped with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tc_example_plugin"


@pytest.fixture(scope="module")
def example_plugin():
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    res = subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(FIXTURE)],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"installing the example plugin failed:\n{res.stderr}"
    yield
    subprocess.run([*pip, "uninstall", "-y", "tc-example-plugin"], capture_output=True)


def test_discovered_and_listed(example_plugin, runner) -> None:
    res = runner.traincheck("plugins", "--json")
    assert res.returncode == 0, res.stderr
    rows = {p["name"]: p for p in json.loads(res.stdout)["plugins"]}
    ex = rows["example"]
    assert ex["loads"] and ex["version"] == "1.2.3" and ex["distribution"] == "tc-example-plugin"
    assert "msgspec" in ex["frameworks"]
    missing = rows["example_needs_missing"]
    assert not missing["loads"]
    assert "surely-not-installed-framework" in missing["reason"]
    assert "not installed" in missing["reason"]
    text = runner.traincheck("plugins").stdout
    assert "skipped: needs surely-not-installed-framework>=1.0, which is not installed" in text


def test_selected_plugin_instruments_and_takes_options(example_plugin, runner) -> None:
    runner.script("custom_lib.py", """
        def train_step(n):
            return n * 2
    """)
    runner.script("train.py", """
        import custom_lib
        print(sum(custom_lib.train_step(i) for i in range(3)))
    """)
    res = runner.traincheck("run", "-o", "out", "--plugin", "example",
                            "--example-greeting", "hello", "train.py")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "6"
    dump = runner.traincheck("inspect", "out", "--dump").stdout.splitlines()
    events = [json.loads(line) for line in dump]
    calls = [e for e in events if e["kind"] == "call"]
    assert [c["api"] for c in calls] == ["custom_lib.train_step"] * 3
    header = next(e for e in events if e["kind"] == "header")
    assert header["plugins"] == {"example": "1.2.3"}
    assert header["frameworks"] == {"example-lib": "9.9"}
    metas = [e["values"] for e in events if e["kind"] == "meta"]
    assert {"example": "hello"} in metas


def test_skipped_plugin_gives_one_line_not_a_traceback(example_plugin, runner) -> None:
    runner.script("t.py", "print('ran')\n")
    res = runner.traincheck("run", "-o", "out", "--plugin", "example_needs_missing", "t.py")
    assert res.returncode == 0
    assert res.stdout.strip() == "ran"
    assert ("plugin example_needs_missing skipped: needs surely-not-installed-framework"
            in res.stderr)
    assert "Traceback" not in res.stderr


def test_autoload_can_be_disabled(example_plugin, runner) -> None:
    runner.script("t.py", "print('ran')\n")
    res = runner.traincheck("run", "-o", "out", "t.py",
                            env={"TRAINCHECK_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert res.returncode == 0
    header = json.loads(runner.traincheck("inspect", "out", "--dump").stdout.splitlines()[0])
    assert header["plugins"] == {}
    res = runner.traincheck("run", "-o", "out2", "t.py")
    header = json.loads(runner.traincheck("inspect", "out2", "--dump").stdout.splitlines()[0])
    assert "example" in header["plugins"]


def test_unknown_plugin_is_a_usage_error(runner) -> None:
    runner.script("t.py", "print('ran')\n")
    res = runner.traincheck("run", "--plugin", "nope", "t.py")
    assert res.returncode == 2
    assert "unknown plugin 'nope'" in res.stderr
    assert "ran" not in res.stdout
