#!/usr/bin/env bash
# The quick-start demo, end to end: trace a healthy training run, infer invariants from it, then
# check a buggy run online (inside the training process) and offline, and a healthy rerun.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${DEMO_DIR:-demo-output}"
rm -rf "$out"
mkdir -p "$out"

echo "== 1. trace a healthy training run (CNN on synthetic data)"
traincheck run --plugin torch -o "$out/healthy" "$here/train.py" --seed 0 --steps 30
echo
echo "== 2. what the trace holds"
traincheck inspect "$out/healthy" --top 12
echo
echo "== 3. infer invariants from the healthy run"
traincheck infer "$out/healthy" -o "$out/invariants.jsonl"
echo
echo "== 4. a buggy run (classifier head frozen by mistake), checked online while it trains"
traincheck run --plugin torch --invariants "$out/invariants.jsonl" -o "$out/buggy" \
    "$here/train.py" --seed 1 --steps 30 --bug frozen
echo
echo "== 5. the same buggy run, checked offline from its trace (exit 1 = violations found)"
status=0
traincheck check "$out/buggy" -i "$out/invariants.jsonl" --html "$out/buggy-report.html" \
    || status=$?
if [ "$status" -ne 1 ]; then
    echo "demo: expected \`traincheck check\` to find the frozen head (exit 1), got $status" >&2
    exit 1
fi
echo
echo "== 6. a healthy rerun with another seed: no false alarms expected"
traincheck run --plugin torch --invariants "$out/invariants.jsonl" -o "$out/healthy-rerun" \
    "$here/train.py" --seed 1 --steps 30
traincheck check "$out/healthy-rerun" -i "$out/invariants.jsonl"
echo
echo "demo: done. Open $out/buggy-report.html for the HTML report of the buggy run."
