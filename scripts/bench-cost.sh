#!/usr/bin/env bash
# `make bench-cost`: issue 9's scenario on moto with the release binaries;
# writes target/bench-cost.md (and .json, and .png: cost against lag). Knobs: BENCH_COST_SCALE (0.3 for
# a quick look), BENCH_COST_CELLS ("1:default,1:60s,10:30s"),
# BENCH_COST_DYNAMODB=1 (checkpoints in a table), BENCH_COST_LABEL.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  cargo build --release --quiet --bins
  exec scripts/with-moto.sh "$0" "$@"
fi
exec nice -n 5 .venv/bin/python scripts/bench-cost.py "$@"
