#!/usr/bin/env bash
# Run sweeps and studies as Ray jobs on a two-node cluster on this one machine: a head and one
# worker raylet (python -m moldiff.local_cluster), one CPU each by default, so a study's two
# concurrent trials land on different raylets. Each spec is one `ray job submit` (run in turn),
# with its runs and data on this machine's disk (absolute paths: the job's working directory is
# Ray's temporary copy of this checkout). The cluster is stopped on exit, also after Ctrl-C.
#
#   bash cluster/local_jobs.sh tuning/psm_lj13.yaml experiments/studies/fp_muller_brown_quick.yaml
#
# Environment: CPUS_PER_NODE (1), OUTPUT_DIR ($PWD/runs), DATA_ROOT ($PWD/data), LOG_DIR
# ($OUTPUT_DIR/local_jobs: the cluster's and each job's log).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bash cluster/local_jobs.sh SPEC [SPEC ...]" >&2; exit 2; }
for spec in "$@"; do [ -f "$spec" ] || { echo "local_jobs: no spec file $spec" >&2; exit 2; }; done

OUTPUT_DIR=${OUTPUT_DIR:-$PWD/runs}
DATA_ROOT=${DATA_ROOT:-$PWD/data}
LOG_DIR=${LOG_DIR:-$OUTPUT_DIR/local_jobs}
mkdir -p "$LOG_DIR"
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled} RAY_USAGE_STATS_ENABLED=0 RAY_TRAIN_ENABLE_PRINT_PATCH=0

python -m moldiff.local_cluster start --workers 1 --cpus-per-node "${CPUS_PER_NODE:-1}" > "$LOG_DIR/cluster.log" 2>&1 &
cluster=$!
trap 'kill -TERM $cluster 2>/dev/null; wait $cluster 2>/dev/null || true' EXIT
until address=$(grep -o 'RAY_ADDRESS=\S*' "$LOG_DIR/cluster.log" | cut -d= -f2) && [ -n "$address" ]; do
  kill -0 $cluster 2>/dev/null || { echo "local_jobs: the cluster did not start:" >&2; cat "$LOG_DIR/cluster.log" >&2; exit 1; }
  sleep 2
done
echo "[local_jobs] cluster up at $address (dashboard and job server); logs in $LOG_DIR"

for spec in "$@"; do
  name=$(basename "$spec" .yaml)
  echo "[local_jobs] $(date -u +%H:%M:%S) submitting $spec"
  start=$(date +%s)
  ray job submit --address "$address" --working-dir . --runtime-env cluster/runtime_env.yaml -- \
      python experiments/run.py --sweep "$spec" output_dir="$OUTPUT_DIR" data.root="$DATA_ROOT" \
      > "$LOG_DIR/$name.log" 2>&1 || { echo "[local_jobs] $spec failed; see $LOG_DIR/$name.log" >&2; exit 1; }
  echo "[local_jobs] $(date -u +%H:%M:%S) $spec finished in $(( ($(date +%s) - start) / 60 )) min: $(grep -o "Job '[^']*' succeeded" "$LOG_DIR/$name.log")"
done
