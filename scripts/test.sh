#!/usr/bin/env bash
# Set up .venv (if needed) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# scratch space for Ray sessions and PyG/torch temp files (short path: Ray's unix sockets live here)
scratch=$(mktemp -d /tmp/mdtest.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch" RAY_TMPDIR="$scratch"
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 RAY_COLOR_PREFIX=0 MOLDIFF_DASHBOARD=0
.venv/bin/python -m pytest -q tests "$@"
