"""Configuration precedence: defaults < file < environment < command line."""

from __future__ import annotations

import msgspec
import pytest

from traincheck_core import UsageError
from traincheck_core.config import SESSION_ENV, Config, load_config


def test_defaults(tmp_path) -> None:
    c = load_config(env={}, cwd=tmp_path)
    assert c == Config()


def test_file_env_cli_precedence(tmp_path) -> None:
    (tmp_path / "traincheck.toml").write_text(
        'output = "from-file"\nplugins = ["torch"]\non_violation = "raise"\n')
    c = load_config(env={}, cwd=tmp_path)
    assert (c.output, c.plugins, c.on_violation) == ("from-file", ["torch"], "raise")
    c = load_config(env={"TRAINCHECK_OUTPUT": "from-env", "TRAINCHECK_PLUGINS": "torch, jax"},
                    cwd=tmp_path)
    assert (c.output, c.plugins) == ("from-env", ["torch", "jax"])
    c = load_config({"output": "from-cli"}, env={"TRAINCHECK_OUTPUT": "from-env"}, cwd=tmp_path)
    assert c.output == "from-cli"


def test_pyproject_table(tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.traincheck]\nquiet = true\n')
    assert load_config(env={}, cwd=tmp_path).quiet is True


def test_autoload_env(tmp_path) -> None:
    c = load_config(env={"TRAINCHECK_DISABLE_PLUGIN_AUTOLOAD": "1"}, cwd=tmp_path)
    assert c.autoload is False


def test_child_process_uses_parent_config(tmp_path) -> None:
    parent = Config(output="/x", plugins=["torch"], run_id="abc")
    env = {SESSION_ENV: msgspec.json.encode(parent).decode(), "TRAINCHECK_OUTPUT": "ignored"}
    assert load_config(env=env, cwd=tmp_path) == parent


@pytest.mark.parametrize("text,needle", [
    ("on_violation = 'explode'\n", "on_violation"),
    ("bogus_key = 1\n", "bogus_key"),
    ("output = [\n", "invalid TOML"),
])
def test_bad_config_is_a_clear_error(tmp_path, text, needle) -> None:
    (tmp_path / "traincheck.toml").write_text(text)
    with pytest.raises(UsageError, match=needle) as info:
        load_config(env={}, cwd=tmp_path)
    assert "traincheck.toml" in str(info.value)


def test_bad_config_via_cli_exits_2(runner) -> None:
    (runner.path / "traincheck.toml").write_text("on_violation = 'explode'\n")
    runner.script("t.py", "print('ran')\n")
    res = runner.traincheck("run", "t.py")
    assert res.returncode == 2
    assert "traincheck: error: invalid configuration" in res.stderr
    assert "ran" not in res.stdout


def test_checker_cpus_from_file_env_and_cli(tmp_path) -> None:
    from traincheck_core.config import parse_cpus

    (tmp_path / "traincheck.toml").write_text('checker_cpus = "2-3"\n')
    assert load_config(env={}, cwd=tmp_path).checker_cpus == "2-3"
    env = {"TRAINCHECK_CHECKER_CPUS": "1,4-5"}
    assert load_config(env=env, cwd=tmp_path).checker_cpus == "1,4-5"
    assert load_config({"checker_cpus": "7"}, env=env, cwd=tmp_path).checker_cpus == "7"
    assert parse_cpus("1,4-5") == {1, 4, 5} and parse_cpus(" 3 ") == {3}
    for bad in ("", "a", "5-2", "-1", "1-x"):
        with pytest.raises(UsageError, match="checker CPUs"):
            parse_cpus(bad)
