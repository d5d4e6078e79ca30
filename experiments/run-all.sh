#!/usr/bin/env bash
# Runs every experiment sweep of this folder in turn with the local launcher; each skips the runs
# that finished and resumes the ones that did not, so this can be started again after any stop.
# RNNLAB: the rnnlab binary (default: a release build of this checkout). JOBS / THREADS: runs at
# a time and CPU threads shared by them (default 2 / 2: two one-thread runs, which on two cores
# get more epochs per hour than one two-thread run). Sweeps: the arguments, or all in order.
set -uo pipefail
cd "$(dirname "$0")"
RNNLAB="${RNNLAB:-}"
if [ -z "$RNNLAB" ]; then
  cargo build --release -p rnnlab-cli --quiet && RNNLAB="$(cd .. && pwd)/target/release/rnnlab"
fi
sweeps=("$@")
[ ${#sweeps[@]} -gt 0 ] || sweeps=(e1-clipping e6-batch-order e7-pooling e2-learning-rate e3-batch-size e5-regularisation e4-cell)
status=0
for s in "${sweeps[@]}"; do
  echo "== $(date -u +%FT%TZ) $s"
  "$RNNLAB" sweep "$s.toml" --jobs "${JOBS:-2}" --threads "${THREADS:-2}" || status=$?
  [ "$status" -eq 130 ] && exit 130
done
echo "== $(date -u +%FT%TZ) all sweeps ended"
exit "$status"
