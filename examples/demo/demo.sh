#!/usr/bin/env bash
# The quick-start demo: trace a real training job with traincheck and summarize the trace.
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
