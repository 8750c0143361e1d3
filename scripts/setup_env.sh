#!/usr/bin/env bash
# Create .venv if it is missing and install the pinned CPU set plus moldiff (editable).
# Safe to run again: it reinstalls only when the requirement files or pyproject.toml change.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.moldiff-requirements
want=$(cat requirements/cpu.txt requirements/test.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing the pinned requirements (1-2 minutes the first time)"
  # pip byte-compiles as it installs (half the install time here), and that must stay: where
  # PYTHONDONTWRITEBYTECODE is set (this project's machines set it), a package installed with
  # --no-compile is compiled from source again by every process that imports it
  .venv/bin/pip install --quiet --disable-pip-version-check \
      -r requirements/cpu.txt -r requirements/test.txt -e .
  echo "$want" > "$stamp"
else
  echo "[setup] .venv is up to date"
fi
