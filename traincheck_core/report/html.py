"""A self-contained HTML report: inline CSS and an inline SVG timeline, no network access."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping

import msgspec

from .. import __version__
from ..check.result import STATUS_ORDER, CheckResult, InvariantOutcome
from ..invariants import Invariant, Violation
from .diagnosis import diagnose

__all__ = ["render_html", "timeline_svg"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1100px;
padding:1.5em;color:#1d2330;background:#fafbfc}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #dde}
.cards{display:flex;gap:.8em;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde;
border-radius:6px;padding:.6em 1em;min-width:8em}.card b{display:block;font-size:1.6em}
.violated b{color:#b3261e}.held b{color:#2e7d32}.inv{background:#fff;border:1px solid #dde;
border-left:4px solid #b3261e;border-radius:6px;padding:.8em 1em;margin:1em 0}
.inv h3{margin:.1em 0;font-size:1.05em}.muted{color:#667}code,pre{font:12px/1.4 ui-monospace,
Menlo,Consolas,monospace}pre{background:#f3f4f7;padding:.5em;overflow-x:auto;max-height:18em}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border:1px solid #e3e5ea;
padding:.3em .5em;text-align:left;vertical-align:top}th{background:#f0f2f6}
.ok{color:#2e7d32}.bad{color:#b3261e;font-weight:600}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _json(value: object) -> str:
    try:
        return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def timeline_svg(per_step: Mapping[int, int], width: int = 1000, height: int = 160) -> str:
    """Bars of violations per step, as inline SVG."""
    if not per_step:
        return (f'<svg width="{width}" height="40" role="img" aria-label="no violations">'
                '<text x="8" y="24" fill="#2e7d32">no violations</text></svg>')
    lo, hi = min(per_step), max(per_step)
    span = max(1, hi - lo + 1)
    top = max(per_step.values())
    pad_l, pad_b, pad_t = 40, 24, 10
    plot_w, plot_h = width - pad_l - 10, height - pad_b - pad_t
    bar_w = max(1.0, plot_w / span)
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             'role="img" aria-label="violations per step" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 10}" '
             f'y2="{pad_t + plot_h}" stroke="#99a"/>',
             f'<text x="4" y="{pad_t + 10}" font-size="11" fill="#667">{top}</text>',
             f'<text x="4" y="{pad_t + plot_h}" font-size="11" fill="#667">0</text>']
    for step, n in sorted(per_step.items()):
        h = plot_h * n / top
        x = pad_l + (step - lo) * bar_w
        w = max(1, bar_w - 1)
        parts.append(f'<rect x="{x:.1f}" y="{pad_t + plot_h - h:.1f}" width="{w:.1f}"'
                     f' height="{h:.1f}" fill="#b3261e"><title>step {step}: {n} violation(s)'
                     '</title></rect>')
    for step in sorted({lo, hi, lo + span // 2}):
        x = pad_l + (step - lo + 0.5) * bar_w
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" font-size="11" fill="#667" '
                     f'text-anchor="middle">step {step}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _violation_rows(vs: list[Violation]) -> str:
    rows = ["<table><tr><th>step</th><th>rank</th><th>process</th><th>what happened</th>"
            "<th>evidence</th></tr>"]
    for v in sorted(vs, key=lambda v: (v.step if v.step is not None else -1,
                                       v.rank if v.rank is not None else -1)):
        detail = {"expected": v.expected, "observed": v.observed, "evidence": v.evidence}
        detail = {k: x for k, x in detail.items() if x not in (None, [], {})}
        ev = f"<pre>{_e(_json(detail))}</pre>" if detail else ""
        rows.append(f"<tr><td>{_e(v.step)}</td><td>{_e(v.rank)}</td><td>{_e(v.source or '')}"
                    f"</td><td>{_e(v.message)}</td><td>{ev}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _violated(o: InvariantOutcome, inv: Invariant | None,
              frameworks: Mapping[str, list[str]]) -> str:
    d = diagnose(o, inv, frameworks)
    items = [f'<div class="inv" id="{_e(o.id)}"><h3>{_e(o.text or o.id)}</h3>',
             f'<div class="muted"><code>{_e(o.id)}</code> · relation {_e(o.relation)} · '
             f'{o.occurrences} violation(s) in {o.steps_violated} step(s) · first at step '
             f'{_e(o.first_step)} · ranks {_e(", ".join(map(str, o.ranks)) or "-")} · '
             f'{o.repeats} repeat(s) counted</div>',
             f"<p>{_e(d.statement)}</p>"]
    if d.locations:
        items.append("<p>In your code: " + ", ".join(f"<code>{_e(x)}</code>"
                                                     for x in d.locations) + "</p>")
    items.append("<p>Likely causes:</p><ul>" + "".join(f"<li>{_e(c)}</li>" for c in d.causes)
                 + "</ul>")
    for c in d.caveats:
        items.append(f'<p class="muted">Note: {_e(c)}</p>')
    items.append(f"<p>First violation on each rank:</p>{_violation_rows(list(o.firsts))}")
    items.append("</div>")
    return "".join(items)


def _others(outcomes: list[InvariantOutcome]) -> str:
    rows = ["<table><tr><th>status</th><th>invariant</th><th>checked</th><th>why</th></tr>"]
    for o in outcomes:
        cls = "ok" if o.status == "held" else "muted"
        rows.append(f'<tr><td class="{cls}">{_e(o.status)}</td><td>{_e(o.text or o.id)}<br>'
                    f'<code class="muted">{_e(o.id)}</code></td><td>{o.checked}</td>'
                    f"<td>{_e(o.why_not)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def render_html(result: CheckResult, invariants: Mapping[str, Invariant] | None = None,
                title: str = "traincheck report") -> str:
    """The whole report as one HTML string."""
    invariants = invariants or {}
    outs = sorted(result.outcomes, key=lambda o: (STATUS_ORDER[o.status], o.first_step or 0,
                                                  o.id))
    counts = {s: len(result.by_status(s)) for s in STATUS_ORDER}
    cards = "".join(f'<div class="card {s}"><b>{n}</b>{_e(s)}</div>' for s, n in counts.items())
    verdict = ('<p class="bad">Violations found.</p>' if result.violated else
               '<p class="ok">No violations.</p>')
    fw = ", ".join(f"{k} {'/'.join(v)}" for k, v in result.frameworks.items()) or "-"
    body = [f"<h1>{_e(title)}</h1>", verdict,
            f'<p class="muted">traces: {_e(", ".join(result.traces) or "-")} · invariants: '
            f'{_e(", ".join(result.invariants_file) or "-")} · {result.processes} process(es), '
            f"{result.events} events · frameworks: {_e(fw)} · generated "
            f"{_e(time.strftime('%Y-%m-%d %H:%M:%S'))} by traincheck {_e(__version__)}</p>",
            f'<div class="cards">{cards}</div>',
            "<h2>Violations per step</h2>", timeline_svg(result.timeline())]
    violated = [o for o in outs if o.status == "violated"]
    if violated:
        body.append(f"<h2>Violated invariants ({len(violated)})</h2>")
        body += [_violated(o, invariants.get(o.id), result.frameworks) for o in violated]
    rest = [o for o in outs if o.status != "violated"]
    if rest:
        body.append(f"<h2>Other invariants ({len(rest)})</h2>")
        body.append(_others(rest))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
