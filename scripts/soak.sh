#!/usr/bin/env bash
# The soak: FindRelatives end to end at a fixed rate for a long time, on the suite with a 10k gallery.
#
#   flock /tmp/kinship-heavy.lock bash scripts/soak.sh [DURATION] [OUT_DIR] [RATE]
#
# RATE: calls/s; by default 70% of FindRelatives' capacity, measured first on the same suite
# (closed loop, 2 callers, 30 s, as in scripts/measure_capacity.sh). Reports errors, the p99 of the first and last minute, and the
# resident memory of the three services at start and end; exits 1 when a check fails
# (any error, p99 drift over 20%, a service's memory grown over 10%).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10m}
OUT=${2:-/tmp/kinship-soak}
RATE=${3:-}
rm -rf "$OUT" && mkdir -p "$OUT"
EMBEDDER_ACCESS_LOG_SAMPLE=0.01
source scripts/suite_up.sh
start_suite
build_gallery
if [ -z "$RATE" ]; then
  $K loadtest 127.0.0.1:$R --call kinship.v1.KinshipRanker/FindRelatives --data-file "$OUT/find-requests.json" \
    --engine threads -c 2 -z 30s --warmup 5s --quiet --json -o "$OUT/capacity.json"
  RATE=$($PY -c "import json; print(round(0.7 * json.load(open('$OUT/capacity.json'))['rps'], 2))")
fi
echo "== soak at $RATE calls/s for $DURATION" >&2
# One minute at the rate first, unmeasured: caches, Milvus Lite's segments and the allocators settle.
$K soak 127.0.0.1:$R --call kinship.v1.KinshipRanker/FindRelatives --data-file "$OUT/find-requests.json" \
  --rps "$RATE" --duration "$DURATION" --warmup 1m --window 1m "${WATCH[@]}" --json -o "$OUT/soak.json" || status=$?
$PY -c "
import json; r = json.load(open('$OUT/soak.json')); s = r['soak']
print(json.dumps({'count': r['count'], 'rps': round(r['rps'], 2), 'codes': r['statusCodeDistribution'], **s}, indent=2))"
exit ${status:-0}
