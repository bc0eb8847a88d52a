#!/usr/bin/env bash
# FindRelatives end to end, and Search through the indexer, at a gallery of ROWS people in a Milvus server.
#
#   flock /tmp/kinship-heavy.lock env MILVUS_URI=http://127.0.0.1:19530 ROWS=1000000 bash scripts/find_at_scale.sh OUT
#
# The Milvus server is yours to start (docs/indexer.md, "Bulk loads into a Milvus server"). Starts
# the suite (scripts/suite_up.sh) with the indexer on that server and IVF_FLAT (nlist 1,024, nprobe
# 32: the measured choice at a million rows), enrols KinFaceW-I's father-son sons (real faces), adds
# ROWS random people of the default pack's dimension (scripts/fill_gallery.py: BulkEnrol, 4 streams),
# waits until every row is indexed, then measures Search (8 callers) and FindRelatives (2 and 4
# callers), 20 s each, closed loop. Reports are ghz-style JSON in OUT; a table is printed at the end.
# FILL=0 measures the gallery an earlier run left on the server (after Milvus has settled).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/kinship-find-at-scale}
: "${MILVUS_URI:?set MILVUS_URI to the Milvus server, e.g. http://127.0.0.1:19530}"
ROWS=${ROWS:-1000000}
rm -rf "$OUT" && mkdir -p "$OUT"
source scripts/suite_up.sh
ltt() { $K loadtest "$@" --quiet --json --engine threads; }
INDEXER_ARGS=(--milvus-uri "$MILVUS_URI" --index-type IVF_FLAT --index-build-params '{"nlist": 1024}'
  --index-search-params '{"nprobe": 32}')

start_suite
$K enroll "$KIN"/images/father-son/*_2.jpg --embedder 127.0.0.1:$E --indexer 127.0.0.1:$I --source kinfacew-sons \
  --json >"$OUT/enroll.json" || grep -q '"enrolled"' "$OUT/enroll.json"  # exit 1: some 64x64 crops have no face
if [ "${FILL:-1}" = 1 ]; then
  $PY scripts/fill_gallery.py 127.0.0.1:$I --rows "$ROWS" >"$OUT/fill.json"
else  # FILL=0: the server holds the gallery of an earlier run; measure it again
  echo '{"reused_gallery": true}' >"$OUT/fill.json"
fi
$PY scripts/find_requests.py 127.0.0.1:$E "$KIN" "$OUT/find-requests.json" >&2

echo "== Search through the indexer, and FindRelatives, at $ROWS rows" >&2
ltt 127.0.0.1:$I --call kinship.v1.Indexer/Search -c 8 -z 20s --warmup 3s "${WATCH[@]}" -o "$OUT/search.json"
for c in 2 4; do
  ltt 127.0.0.1:$R --call kinship.v1.KinshipRanker/FindRelatives --data-file "$OUT/find-requests.json" -c $c -z 20s \
    --warmup 3s "${WATCH[@]}" -o "$OUT/find-c$c.json"
done
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(open(out / "fill.json").read().strip())
for name in ("search", "find-c2", "find-c4"):
    r = json.loads((out / f"{name}.json").read_text())
    p = {d["percentage"]: d["latency"] / 1e6 for d in r["latencyDistribution"]}
    print(f"{name:10s} {r['count']:6d} calls {r['rps']:7.1f}/s  p50 {p[50]:7.1f} ms  p99 {p[99]:7.1f} ms  {r['statusCodeDistribution']}")
PY
