"""Render suite results as a Markdown table and a JSON file under benchmarks/results/."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any


def write_reports(results: dict[str, Any], out: Path, tag: str = "") -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = "suite-" + time.strftime("%Y-%m-%d") + (f"-{tag}" if tag else "")
    results.setdefault("overheads", cite_overheads(RESULTS))
    results["summary"] = summarize(results)
    js = out / f"{stem}.json"
    js.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    md = out / f"{stem}.md"
    md.write_text(render(results))
    return md, js


RESULTS = Path(__file__).resolve().parent.parent / "results"  # benchmarks/results
OVERHEAD_KEYS = {"median": ("median_overhead", "median"), "worst": ("worst_overhead", "worst")}


def cite_overheads(results_dir: Path) -> dict[str, Any]:
    """The latest PyTorch numbers of the overhead benchmarks (benchmarks/collection,
    benchmarks/checking: collection-*.json, checking-*.json), which time steps against plain
    runs in the same invocation; the suite's own wall-clock ratios are dominated by interpreter
    start-up. A file may hold only other frameworks' sections: of the files with PyTorch
    numbers, the one covering the most workloads (not a ``--workloads`` subset) is cited, the
    newest by its recorded date among those."""
    cited: dict[str, Any] = {}
    for kind in ("collection", "checking"):
        found = [got for f in results_dir.glob(f"{kind}-*.json")
                 if (got := _cited(f)) is not None]
        cited[kind] = max(found, key=lambda g: (g["workloads"], g["date"] or "", g["file"]),
                          default={"file": None, "note": f"no {kind}-*.json with PyTorch "
                                   f"numbers in {results_dir}"})
    return cited


def _cited(f: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    torch = (data.get("frameworks") or {}).get("torch") or {}
    where = [data, data.get("summary") if isinstance(data.get("summary"), dict) else {},
             torch.get("summary") if isinstance(torch.get("summary"), dict) else {}]
    rows = next((d[k] for d in (torch, data) for k in ("workloads", "rows")
                 if isinstance(d.get(k), list)), [])
    got: dict[str, Any] = {"file": f.name, "date": data.get("date"),
                           "machine": data.get("machine"),
                           "workloads": len(rows)}
    for name, keys in OVERHEAD_KEYS.items():
        got[name] = next((d[k] for d in where for k in keys
                          if isinstance(d.get(k), (int, float))), None)
    return got if got["median"] is not None else None


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    bugs = r["bugs"]
    scored = [b for b in bugs if b.get("online") or b.get("offline")]

    def count(which: str, key: str) -> int:
        return sum(1 for b in scored if (b.get(which) or {}).get(key))

    progs_ok = sum(1 for h in r["healthy"]
                   if _ok(h.get("stages", {}).get("plain")) or _ok(h.get("stages", {}).get("ref")))
    bug_progs_ok = sum(1 for b in bugs if _runs(b, "healthy") and _runs(b, "buggy"))
    s: dict[str, Any] = {
        "bug_pairs": len(bugs),
        "bug_pairs_running": bug_progs_ok,
        "bug_pairs_scored": len(scored),
        "detected_online": count("online", "detected"),
        "detected_offline": count("offline", "detected"),
        "on_time_online": count("online", "on_time"),
        "on_time_offline": count("offline", "on_time"),
        "detected_online_or_offline": sum(1 for b in scored if _any(b, "detected")),
        "on_time_online_or_offline": sum(1 for b in scored if _any(b, "on_time")),
        "on_time_share": (round(sum(1 for b in scored if _any(b, "on_time")) / len(bugs), 3)
                          if bugs else None),
        "online_report_latency_ms_median": _median(_latencies(scored)),
        "online_report_latency_ms_max": _max(_latencies(scored)),
        "bug_pairs_with_false_alarms": sum(1 for b in scored if b.get("false_alarms")),
        "healthy_programs": len(r["healthy"]),
        "healthy_programs_running": progs_ok,
        "collection_overhead_median": _median([b.get("collection_overhead") for b in bugs]
                                              + [h.get("collection_overhead")
                                                 for h in r["healthy"]]),
        "checking_overhead_median": _median([b.get("checking_overhead") for b in bugs]),
        "infer_seconds_median": _median([b.get("infer_seconds") for b in bugs]
                                        + [(t.get("infer") or {}).get("seconds")
                                           for t in r["self_checks"] + r["transfer"]]),
        "infer_seconds_max": _max([v for v in [b.get("infer_seconds") for b in bugs]
                                  + [(t.get("infer") or {}).get("seconds")
                                     for t in r["self_checks"] + r["transfer"]]
                                  if v is not None]),
    }
    same = [c for t in r["self_checks"] for c in t.get("checks", []) if c["trace"] == "same_seed"]
    s["identical_reruns_with_violations"] = sum(1 for c in same if c.get("violated"))
    s["identical_reruns_checked"] = sum(1 for c in same if c.get("status", "ok") == "ok")
    by_k: dict[int, list[float]] = {}
    for t in r["transfer"]:
        if t.get("mean_share") is not None:
            by_k.setdefault(t["k"], []).append(t["mean_share"])
    s["transfer_mean_share_by_k"] = {k: round(sum(v) / len(v), 4) for k, v in sorted(by_k.items())}
    return s


def render(r: dict[str, Any]) -> str:
    s, m = r["summary"], r["machine"]
    lines = [
        f"# traincheck silent-bug benchmark — {r['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, {m['os']}; "
        f"Python {m['python']}, torch {m['torch']}, traincheck {m['traincheck']} "
        f"(commit {m['commit']}{', core/plugins modified' if m['dirty'] == 'yes' else ''}).",
        f"traincheck commands available: {', '.join(r['commands']) or 'none'}. "
        f"Suite wall time {r['duration_s']} s; settings {json.dumps(r['settings'])}.",
        *([f"Skipped (their traincheck plugin does not load here): "
           f"{', '.join(r['skipped'])}."] if r.get("skipped") else []),
        "",
        "## Summary",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in s.items()]
    lines += ["", "## Bug pairs", "",
              "Detection counts an invariant only if it did not also fire on the healthy "
              "rerun (other seed). Delay = detection step − trigger step; on time = within "
              "one step. Online: how long after the event that showed it the training "
              "process reported the violation.", "",
              "| bug | category | trigger | online: step (delay) | offline: step (delay) | "
              "by invariant | hint | false alarms | overhead collect / check | status |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for b in r["bugs"]:
        det = next((d for w in ("online", "offline") if (d := b.get(w)) and d["detected"]), {})
        by = det.get("by") or {}
        lines.append(
            f"| {b['name']} | {b['category']} | {b['trigger_step']} | {_det(b.get('online'))} "
            f"| {_det(b.get('offline'))} | {_cell(by.get('relation', ''))} "
            f"{_cell(by.get('text') or by.get('message', ''), 80)} "
            f"| {_cell(by.get('hint', ''), 60)} "
            f"| {len(b.get('false_alarms', []))} | {_x(b.get('collection_overhead'))} / "
            f"{_x(b.get('checking_overhead'))} | {_status(b)} |")
    lines += ["", "## Healthy programs", "",
              "| program | plain run | traced run | collection overhead |", "|---|---|---|---|"]
    for h in r["healthy"]:
        st = h.get("stages", {})
        lines.append(f"| {h['name']} | {_stage(st.get('plain'))} | {_stage(st.get('ref'))} | "
                     f"{_x(h.get('collection_overhead'))} |")
    if r["self_checks"]:
        lines += ["", "### Reruns checked against the program's own invariants", "",
                  "| program | invariants | inference s | identical rerun: violated | "
                  "other seed: violated |", "|---|---|---|---|---|"]
        for t in r["self_checks"]:
            c = {x["trace"]: x for x in t.get("checks", [])}
            lines.append(f"| {t['refs'][0]} | {t.get('invariants', 0)} | {_secs(t)} | "
                         f"{_viol(c.get('same_seed'))} | {_viol(c.get('other_seed'))} |")
    if r["transfer"]:
        lines += ["", "### Transfer: invariants from k programs, checked on the others", "",
                  "| k | reference programs | invariants | inference s | mean share violated | "
                  "union share violated | targets checked |", "|---|---|---|---|---|---|---|"]
        for t in r["transfer"]:
            ok = sum(1 for c in t.get("checks", []) if c.get("status", "ok") == "ok")
            lines.append(f"| {t['k']} | {', '.join(t['refs'])} | {t.get('invariants', 0)} | "
                         f"{_secs(t)} | {_pct(t.get('mean_share'))} | "
                         f"{_pct(t.get('union_share'))} | {ok} |")
    if r["transfer"]:
        lines += _transfer_by_target(r["transfer"])
    lines += ["", "## Overhead (cited from the overhead benchmarks)", "",
              "| what | median | worst | source |", "|---|---|---|---|"]
    for kind, c in r.get("overheads", {}).items():
        src = c.get("file") and f"benchmarks/results/{c['file']} ({c.get('date')})"
        lines.append(f"| {kind} | {_x(c.get('median'))} | {_x(c.get('worst'))} | "
                     f"{src or c.get('note', '')} |")
    fails = _failures(r)
    if fails:
        lines += ["", "## Failed or unavailable stages", ""] + fails
    return "\n".join(lines) + "\n"


def _transfer_by_target(transfer: list[dict[str, Any]]) -> list[str]:
    """Per checked program and k: invariants violated / deployed, over the sets that
    checked it."""
    cells: dict[str, dict[int, list[tuple[int, int, int]]]] = {}
    ks = sorted({t["k"] for t in transfer})
    for t in transfer:
        for c in t.get("checks", []):
            if c.get("share") is not None:
                cells.setdefault(c["target"], {}).setdefault(t["k"], []).append(
                    (len(c.get("violated", [])), c.get("invariants", 0), c.get("triggered", 0)))
    out = ["", "Per checked program: violated / deployed (share), and how many of the deployed "
           "invariants were triggered at all, summed over the reference sets that did not "
           "include it (invariants of another framework's programs never trigger):", "",
           "| program | " + " | ".join(f"k = {k}" for k in ks) + " |",
           "|---|" + "---|" * len(ks)]
    for name in sorted(cells):
        row = []
        for k in ks:
            got = cells[name].get(k)
            v, n, trig = (sum(x[i] for x in got) for i in range(3)) if got else (0, 0, 0)
            row.append(f"{v}/{n} ({_pct(v / n)}), {trig} triggered" if n else "—")
        out.append(f"| {name} | " + " | ".join(row) + " |")
    return out


def _failures(r: dict[str, Any]) -> list[str]:
    out = []
    for kind, items in (("bug", r["bugs"]), ("healthy", r["healthy"])):
        for it in items:
            for stage, st in it.get("stages", {}).items():
                if st["status"] != "ok":
                    tail = st.get("tail", "").strip().splitlines()[-1:] or [""]
                    out.append(f"* {kind} `{it['name']}` {stage}: {st['status']} "
                               f"(exit {st.get('returncode')}) — {_cell(tail[0], 160)}")
            out += [f"* {kind} `{it['name']}`: {n}" for n in it.get("notes", [])]
    for t in r["self_checks"] + r["transfer"]:
        inf = t.get("infer") or {}
        if inf and inf.get("status") != "ok":
            tail = (inf.get("tail") or "").strip().splitlines()[-1:] or [""]
            out.append(f"* infer from {', '.join(t['refs'])}: {inf.get('status')} — "
                       f"{_cell(tail[0], 160)}")
    return out


def _runs(b: dict[str, Any], which: str) -> bool:
    """The pair's ``which`` program ran, plain or traced."""
    st = b.get("stages", {})
    if which == "healthy":
        return _ok(st.get("plain_healthy")) or _ok(st.get("trace_healthy"))
    return _ok(st.get("plain_buggy")) or _ok(st.get("online_buggy")) or _ok(st.get("trace_buggy"))


def _any(b: dict[str, Any], key: str) -> bool:
    return any((b.get(w) or {}).get(key) for w in ("online", "offline"))


def _ok(st: dict[str, Any] | None) -> bool:
    return bool(st) and st["status"] == "ok"


def _latencies(bugs: list[dict[str, Any]]) -> list[float]:
    """Online: ms from the event that showed the detecting violation to its report."""
    out = []
    for b in bugs:
        d = b.get("online") or {}
        lat = (d.get("by") or {}).get("latency_ms") if d.get("detected") else None
        if lat is not None:
            out.append(lat)
    return out


def _det(d: dict[str, Any] | None) -> str:
    if not d:
        return "—"
    if not d["detected"]:
        return "missed" + (f" ({d.get('violated', 0)} noisy)" if d.get("violated") else "")
    delay = d.get("delay")
    mark = " ✓" if d.get("on_time") else ""
    lat = (d.get("by") or {}).get("latency_ms")
    after = f", reported in {lat:.1f} ms" if lat is not None else ""
    return f"{d.get('step')} ({'+' if delay and delay > 0 else ''}{delay}){mark}{after}"


def _viol(c: dict[str, Any] | None) -> str:
    if not c:
        return "—"
    if c.get("status", "ok") != "ok":
        return c["status"]
    return f"{len(c.get('violated', []))} ({_pct(c.get('share'))})"


def _stage(st: dict[str, Any] | None) -> str:
    return "—" if not st else f"{st['status']} {st['seconds']:.1f}s"


def _status(b: dict[str, Any]) -> str:
    return b.get("status", "ok") + ("" if not b.get("notes") else f": {'; '.join(b['notes'])}")


def _secs(t: dict[str, Any]) -> str:
    secs = (t.get("infer") or {}).get("seconds")
    return "—" if secs is None else f"{secs:.1f}"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _max(xs: list[float]) -> float | None:
    return round(max(xs), 2) if xs else None


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(statistics.median(vals), 2) if vals else None


def _cell(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"
