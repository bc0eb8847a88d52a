#!/usr/bin/env bash
# The embedder at capacity and at twice capacity, for several settings side by side.
#
#   flock /tmp/kinship-heavy.lock bash scripts/overload_variants.sh OUT_DIR NAME:ENV=V[,ENV=V] ...
#   e.g. ... /tmp/ovv base:KINSHIP_EMBEDDER_WORKER_NICE=0 nice10:KINSHIP_EMBEDDER_WORKER_NICE=10
#
# For each variant, ROUNDS times (default 2, variants alternating so that the machine's drift
# falls on all of them): starts an embedder alone with those settings, measures its capacity
# (closed loop at its admission bound, KinFaceW-I photos), then an open loop at twice that
# with health probed on both ports, and prints one summary line (scripts/overload_summary.py).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?OUT_DIR}; shift
ROUNDS=${ROUNDS:-2} SECONDS_AT=${SECONDS_AT:-20}
K=.venv/bin/kinship PY=.venv/bin/python KIN=${KINFACEW:-../shared/data/kinfacew-i}
E=50251 HE=50261
rm -rf "$OUT" && mkdir -p "$OUT"
EP=
trap '[ -n "$EP" ] && kill $EP 2>/dev/null; wait 2>/dev/null || true' EXIT
for round in $(seq "$ROUNDS"); do
  for variant in "$@"; do
    name=${variant%%:*} envs=${variant#*:}
    dir="$OUT/$name-$round"; mkdir -p "$dir"
    IFS=, read -ra pairs <<<"$envs"
    env "${pairs[@]}" KINSHIP_LOG_FORMAT=json KINSHIP_ACCESS_LOG_SAMPLE=1 $K serve embedder --port $E --health-port $HE \
      --artifacts-dir "$dir/artifacts" >"$dir/embedder.log" 2>&1 &
    EP=$!
    $PY -c "import sys, time; from kinship.cli.serve import wait_serving; sys.exit(0 if wait_serving('127.0.0.1:$E', time.monotonic() + 120) else 1)"
    BOUND=$($PY -c "
import json
for line in open('$dir/embedder.log'):
    if '\"listening\"' in line:
        print(json.loads(line)['max_concurrent_calls']); break")
    $K loadtest 127.0.0.1:$E --call kinship.v1.Embedder/Embed --images "$KIN/images/father-son" -c "$BOUND" \
      -z ${SECONDS_AT}s --warmup 3s --engine threads --quiet --json --watch embedder=$EP -o "$dir/capacity.json"
    RATE=$($PY -c "import json; print(round(2 * json.load(open('$dir/capacity.json'))['rps'], 1))")
    $PY scripts/health_watch.py 127.0.0.1:$HE --seconds $((SECONDS_AT + 2)) --service kinship.v1.Embedder >"$dir/health-port.json" &
    W1=$!
    $PY scripts/health_watch.py 127.0.0.1:$E --seconds $((SECONDS_AT + 2)) --service kinship.v1.Embedder >"$dir/health-main.json" &
    W2=$!
    $K loadtest 127.0.0.1:$E --call kinship.v1.Embedder/Embed --images "$KIN/images/father-son" --rps "$RATE" \
      -z ${SECONDS_AT}s --warmup 2s --quiet --json --watch embedder=$EP --record "$dir/overload-calls.csv" -o "$dir/overload.json"
    wait $W1 $W2
    $PY scripts/overload_summary.py "$dir" --pid $EP --name "$name#$round"
    kill $EP; wait $EP 2>/dev/null || true; EP=
  done
done
