#!/usr/bin/env bash
# One command on a machine with one or more CUDA GPUs: set up, then run a tiny config of every
# family with ray.use_gpu=true and fail if any stage ran on the CPU (benchmarks/gpu_check.py).
# Writes docs/results/gpu_check.{md,json} (or --output DIR). About 5 minutes.
#
#   bash scripts/gpu_check.sh [--output DIR] [--only stage,...] [--allow-cpu]
#
# Set-up, first that applies:
#   1. .venv/ with a CUDA torch (a cluster node set up with the README's GPU install);
#   2. .gpu_kit/ (or $MOLDIFF_GPU_KIT; made elsewhere by scripts/gpu_kit.sh, carried with the
#      working tree): its wheels are installed into a scratch folder, for a machine with torch but
#      no network and no Ray;
#   3. the python3 on PATH, if it already imports ray, pydantic and ase.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 MOLDIFF_DASHBOARD=0 PYTHONUNBUFFERED=1
export RAY_TRAIN_ENABLE_PRINT_PATCH=0
PY=${PYTHON:-python3}
KIT=${MOLDIFF_GPU_KIT:-.gpu_kit}
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  PY=.venv/bin/python
  echo "[gpu_check] using .venv ($($PY -c 'import torch; print(torch.__version__)'))"
elif [ -d "$KIT/wheels" ]; then
  site=${TMPDIR:-/tmp}/moldiff-gpu-kit
  echo "[gpu_check] installing $KIT/wheels into $site (no network needed)"
  "$PY" -m pip install -q --no-index --no-deps --no-cache-dir --disable-pip-version-check \
      --upgrade --target "$site" "$KIT"/wheels/*.whl
  export PYTHONPATH="$site:$PWD/platform${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$site/bin:$PATH"
else
  export PYTHONPATH="$PWD/platform${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import ray, pydantic, ase" 2>/dev/null; then
  echo "error: $PY cannot import ray, pydantic and ase. Install moldiff with a CUDA torch (README, 'GPUs')," >&2
  echo "       or build the offline kit elsewhere with 'bash scripts/gpu_kit.sh' and bring .gpu_kit/ along." >&2
  exit 2
fi
"$PY" -c "import torch; print(f'[gpu_check] torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)')"
exec "$PY" benchmarks/gpu_check.py --prepared "$KIT/prepared" "$@"
