#!/usr/bin/env bash
# Build .gpu_kit/: what scripts/gpu_check.sh needs on a GPU machine that has torch, numpy, pandas,
# pyarrow, scipy, matplotlib, aiohttp and friends but no network and no Ray, pydantic, ASE, RDKit
# or tblite (the lent H200 machine: Python 3.12, torch 2.11, CUDA 13).
#
#   bash scripts/gpu_kit.sh [--python-version 3.12] [--kit .gpu_kit] [--wheels-only]
#
# It downloads the wheels for that Python (pip download, binary only), strips the parts of Ray's
# wheel that moldiff never imports (Java jars, RLlib, Serve, LLM, the dashboard's web client: 79 MB
# -> about 42 MB for cp312), and prepares what needs tools the GPU machine lacks: a tiny PaiNN force
# field trained here on GFN2-xTB labels of the QM9 fixture (tblite) for the FIRE stage. The kit
# travels with the working tree (.gpu_kit/ is git-ignored; name it in the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=3.12
KIT=.gpu_kit
PREPARE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) PYVER=$2; shift 2 ;;
    --kit) KIT=$2; shift 2 ;;
    --wheels-only) PREPARE=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
bash scripts/setup_env.sh >/dev/null
PY=.venv/bin/python
TAG=cp${PYVER/./}
mkdir -p "$KIT/wheels"
rm -f "$KIT"/wheels/*.whl
# one version of each package; versions as in requirements/cpu.txt and what they need
WHEELS=(
  ray==2.60.0 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0
  rpds-py==2026.9.1 tensorboardX==2.6.5 ase==3.29.0
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
echo "[kit] downloading ${#WHEELS[@]} wheels for CPython $PYVER into $KIT/wheels"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp "${PLATFORMS[@]}" -d "$KIT/wheels" "${WHEELS[@]}"
"$PY" - "$KIT/wheels" <<'EOF'
"""Strip Ray's wheel of what moldiff never imports and rewrite its RECORD (pip checks it)."""
import base64, hashlib, sys, zipfile
from pathlib import Path

DROP = ("ray/jars/", "ray/rllib/", "ray/serve/", "ray/llm/", "ray/dashboard/client/")
wheel = next(Path(sys.argv[1]).glob("ray-*.whl"))
stripped = wheel.with_suffix(".tmp")
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(stripped, "w", zipfile.ZIP_DEFLATED) as dst:
    record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
    rows = []
    for info in src.infolist():
        if info.filename.startswith(DROP) or info.filename == record_name:
            continue
        data = src.read(info)
        dst.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{info.filename},sha256={digest},{len(data)}")
    dst.writestr(record_name, "\n".join(rows + [f"{record_name},,"]) + "\n")
before, after = wheel.stat().st_size, stripped.stat().st_size
stripped.replace(wheel)
print(f"[kit] {wheel.name}: {before / 2**20:.0f} MB -> {after / 2**20:.0f} MB without {', '.join(DROP)}")
EOF
if [ "$PREPARE" = 1 ]; then
  echo "[kit] preparing the FIRE stage's force field (GFN2-xTB labels of the QM9 fixture, tblite)"
  RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 MOLDIFF_DASHBOARD=0 \
    "$PY" benchmarks/gpu_check.py --prepare "$KIT/prepared"
fi
du -sh "$KIT"/* | sed 's/^/[kit] /'
echo "[kit] done: carry $KIT to the GPU machine and run: bash scripts/gpu_check.sh"
