"""Requirement checks that decide whether a plugin loads."""

from traincheck_core.plugins import check_requirements


def test_satisfied_reports_versions() -> None:
    reason, versions = check_requirements(("msgspec>=0.1", "pluggy"))
    assert reason is None and set(versions) == {"msgspec", "pluggy"}


def test_missing_and_too_old() -> None:
    assert "not installed" in check_requirements(("no-such-dist-xyz>=1",))[0]
    reason, _ = check_requirements(("msgspec>=999",))
    assert reason.startswith("needs msgspec>=999, found msgspec ")


def test_alternatives() -> None:
    reason, versions = check_requirements(("no-such-dist-xyz>=1 | msgspec>=0.1",))
    assert reason is None and "msgspec" in versions
    reason, _ = check_requirements(("no-such-a | no-such-b",))
    assert "no-such-a" in reason and "no-such-b" in reason


def test_invalid_requirement_is_a_reason_not_a_crash() -> None:
    reason, _ = check_requirements(("not a valid ((requirement",))
    assert "invalid requirement" in reason
