#!/usr/bin/env bash
# Gives back the checkpoints of finished experiment runs whose folders hold only the committed
# files (metrics, config, provenance): trains each such run again from its config.resolved.toml
# in results/.retrain/, checks that every logged figure but the timings equals the committed
# metrics.jsonl (the same seed gives the same run), and moves the new checkpoints/ and the files
# the folder lacks (tokenizer.json) into it; the committed files stay as they are. A run whose figures differ is reported and left.
# Then `rnnlab sweep eval` can evaluate it. Resumable: runs that have their checkpoints are skipped.
# Arguments: run folders (default: every results/*/seed-*). RNNLAB, JOBS as run-all.sh.
set -uo pipefail
cd "$(dirname "$0")"
RNNLAB="${RNNLAB:-$(cd .. && pwd)/target/release/rnnlab}"
# Exit status 0 when the two metrics.jsonl files hold the same figures but for timings.
SAME='import json,sys
f=lambda p:[{k:v for k,v in json.loads(l).items() if "second" not in k} for l in open(p)]
sys.exit(f(sys.argv[1])!=f(sys.argv[2]))'
retrain() {
  local run="$1" tmp
  [ -f "$run/checkpoints/best.safetensors" ] && return 0
  [ -f "$run/metrics.jsonl" ] || return 0
  tmp="results/.retrain/${run#results/}"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$tmp")"
  if ! "$RNNLAB" train "$run/config.resolved.toml" --out "$tmp" --threads 1 > "$tmp.log" 2>&1; then
    echo "$run: training failed, see $tmp.log"
    return 1
  fi
  if python3 -c "$SAME" "$run/metrics.jsonl" "$tmp/metrics.jsonl"; then
    rm -rf "$run/checkpoints"
    mv "$tmp/checkpoints" "$run/checkpoints"
    # The other files the folder lacks (tokenizer.json, ...); the committed ones stay.
    cp -rn "$tmp/." "$run/"
    rm -rf "$tmp" "$tmp.log"
    echo "$run: checkpoints and tokenizer back (metrics equal the committed ones)"
  else
    echo "$run: the new run's metrics differ from the committed ones; left in $tmp"
    return 1
  fi
}
export -f retrain
export RNNLAB SAME
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(results/*/seed-*)
printf '%s\n' "${runs[@]}" | xargs -P "${JOBS:-2}" -I{} bash -c 'retrain "$@"' _ {}
