"""HTML and terminal reports, and rebuilding a result from a run directory."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from test_check_support import RELATIONS, equal_invariant, step_invariant, synthetic_records

from traincheck_core.check.engine import CheckEngine
from traincheck_core.check.sinks import ViolationLog, read_violations
from traincheck_core.invariants import Violation
from traincheck_core.report.html import render_html, timeline_svg
from traincheck_core.report.load import load_run_result, with_invariants
from traincheck_core.report.terminal import format_summary


def checked(invs, **kw):
    engine = CheckEngine(invs, RELATIONS)
    engine.feed_records(synthetic_records(**kw))
    engine.finish()
    return engine.result()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_html_is_self_contained_and_complete() -> None:
    invs = [step_invariant(), equal_invariant(world=2), step_invariant(api="never")]
    result = checked(invs, steps=8, ranks=2, frozen_from=5, diverge_from=6)
    page = render_html(result, {i.id: i for i in invs})
    p = _Tags()
    p.feed(page)
    assert p.urls == []  # nothing to fetch
    assert {"style", "svg", "rect", "table"} <= set(p.tags) and "script" not in p.tags
    # one bar per violated step (both ranks frozen, rank 1 diverged), counts in tooltips
    bars = re.findall(r"<title>step (\d+): (\d+) violation", page)
    assert [(int(s), int(n)) for s, n in bars] == [(5, 2), (6, 3), (7, 3)]
    assert page.count('class="inv"') == 2  # violated invariants, grouped
    assert "first at step 5" in page and "ranks 0, 1" in page
    assert "train.py:42" in page and "Likely causes" in page
    assert "API never called: never" in page


def test_html_escapes_user_text() -> None:
    inv = step_invariant()
    inv.text = "<script>alert(1)</script>"
    result = checked([inv], steps=3, frozen_from=1)
    result.outcomes[0].text = inv.text
    page = render_html(result, {inv.id: inv})
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_empty_timeline() -> None:
    assert "no violations" in timeline_svg({})


def test_terminal_summary_lists_everything() -> None:
    invs = [step_invariant(), equal_invariant(world=2), step_invariant(api="never")]
    text = format_summary(checked(invs, steps=6, ranks=2, frozen_from=4), show_held=True)
    lines = text.splitlines()
    assert lines[0].startswith("traincheck: 3 invariants checked over 2 process(es)")
    assert "1 violated, 1 held, 1 not-triggered" in lines[0]
    rows = [x for x in lines if x.startswith(("violated", "held"))]
    assert rows[0].split()[:5] == ["violated", "4", "4", "4", "0,1"]
    assert rows[1].startswith("held")
    assert "API never called: never" in text
    assert lines[-1] == "result: VIOLATIONS FOUND"


def test_run_dir_from_results_and_violation_log(tmp_path) -> None:
    inv = step_invariant()
    other = equal_invariant()
    # process A finished and wrote its result; process B was killed: only its log survives
    res = checked([inv], steps=5, frozen_from=3)
    (tmp_path / "checkresult-h-100.json").write_bytes(__import__("msgspec").json.encode(res))
    log = ViolationLog(tmp_path / "violations.jsonl")
    for v in res.outcomes[0].firsts:
        log.write(v)
    for step in (2, 3):
        log.write(Violation(invariant=inv.id, relation=inv.relation, message="m", step=step,
                            rank=1, source="h:200"))
    log.close()
    with open(tmp_path / "violations.jsonl", "ab") as fh:
        fh.write(b'{"invariant": "cut sho')  # a line cut short by SIGKILL
    assert len(read_violations(tmp_path / "violations.jsonl")) == 3
    merged = with_invariants(load_run_result(tmp_path), [inv, other])
    by = {o.id: o for o in merged.outcomes}
    o = by[inv.id]
    assert o.status == "violated" and o.ranks == [0, 1] and o.first_step == 2
    assert o.occurrences == 2 + 2 and o.text == inv.text
    assert by[other.id].status == "not-checked"
