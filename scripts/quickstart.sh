#!/usr/bin/env bash
# Set up .venv (if needed) and run the LJ-13 DSM experiment through Ray: data, training, sampling,
# metrics. Extra arguments are config overrides, e.g. `bash scripts/quickstart.sh training.epochs=20`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"
exec .venv/bin/python experiments/run.py experiments/configs/dsm_lj13_quick.yaml "$@"
