"""Pool the pair ratios of several runs of ``bench_checking.py`` (same framework, same code).

One run of 9 pairs per workload leaves a median free to move by several percent on a shared
VM; runs at the same code can be pooled. Prints, per workload and over workloads, the median
pair ratio of all pooled pairs and its bootstrap 90% interval (as ``bench_checking.py``
computes it), and each run's own median.

Usage: python benchmarks/checking/pool.py RESULT.json [RESULT.json ...] [--framework torch]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checking import TARGET_MEDIAN, median_ci, sections  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--framework", default="torch")
    args = ap.parse_args()
    pooled: dict[str, list[float]] = {}
    runs: list[tuple[str, dict[str, float]]] = []
    for path in args.results:
        sec = sections(json.loads(path.read_text())).get(args.framework)
        if sec is None:
            raise SystemExit(f"{path}: no {args.framework} section")
        per = {w["workload"]: statistics.median(w["ratios"]) for w in sec["workloads"]}
        runs.append((path.stem, per))
        for w in sec["workloads"]:
            pooled.setdefault(w["workload"], []).extend(w["ratios"])
    names = sorted(pooled)
    print("| workload | pairs | pooled median | 90% interval | " +
          " | ".join(stem for stem, _ in runs) + " |")
    print("|---|---|---|---|" + "---|" * len(runs))
    for name in names:
        lo, hi = median_ci([pooled[name]])
        each = " | ".join(f"{per[name]:.3f}" if name in per else "-" for _, per in runs)
        print(f"| {name} | {len(pooled[name])} | {statistics.median(pooled[name]):.3f} | "
              f"{lo:.3f}-{hi:.3f} | {each} |")
    samples = [pooled[n] for n in names]
    lo, hi = median_ci(samples)
    median = statistics.median(statistics.median(s) for s in samples)
    verdict = ("the whole interval is at or below it" if hi <= TARGET_MEDIAN else
               "the whole interval is above it" if lo > TARGET_MEDIAN else
               "the interval spans it")
    print(f"\nMedian over workloads {median:.3f}x, bootstrap 90% interval {lo:.3f}-{hi:.3f}x; "
          f"against the {TARGET_MEDIAN}x target: {verdict}.")


if __name__ == "__main__":
    main()
