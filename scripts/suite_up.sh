# Sourced by measure_capacity.sh and soak.sh: the suite on spare ports with a 10k gallery.
#
#   OUT=/tmp/x; source scripts/suite_up.sh; start_suite; build_gallery
#
# Ports: embedder 50251, indexer 50252, ranker 50253, health-only ports 50261-50263.
# Sets EP IP RP (pids), WATCH (--watch flags for the load tool), PIDS (stopped on exit).
K=.venv/bin/kinship
PY=.venv/bin/python
KIN=${KINFACEW:-../shared/data/kinfacew-i}
E=50251 I=50252 R=50253 HE=50261 HI=50262 HR=50263
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_serving() {  # address
  $PY -c "import sys, time; from kinship.cli.serve import wait_serving; sys.exit(0 if wait_serving('$1', time.monotonic() + 120) else 1)"
}

start_suite() {
  mkdir -p "$OUT/data"
  export KINSHIP_LOG_FORMAT=json KINSHIP_LOG_LEVEL=info
  KINSHIP_ACCESS_LOG_SAMPLE=${EMBEDDER_ACCESS_LOG_SAMPLE:-1} $K serve embedder --port $E --health-port $HE \
    --artifacts-dir "$OUT/data/artifacts" >"$OUT/embedder.log" 2>&1 &
  EP=$!
  PIDS+=($EP)
  # INDEXER_ARGS (an array, optional): e.g. a Milvus server's --milvus-uri (scripts/find_at_scale.sh).
  KINSHIP_ACCESS_LOG_SAMPLE=0.01 $K serve indexer --port $I --health-port $HI --data-dir "$OUT/data" \
    ${INDEXER_ARGS[@]+"${INDEXER_ARGS[@]}"} >"$OUT/indexer.log" 2>&1 &
  IP=$!
  PIDS+=($IP)
  KINSHIP_ACCESS_LOG_SAMPLE=0.01 $K serve ranker --port $R --health-port $HR --artifacts-dir "$OUT/data/artifacts" \
    --embedder-address 127.0.0.1:$E --indexer-address 127.0.0.1:$I >"$OUT/ranker.log" 2>&1 &
  RP=$!
  PIDS+=($RP)
  for a in $E $I $R; do wait_serving 127.0.0.1:$a; done
  WATCH=(--watch embedder=$EP --watch indexer=$IP --watch ranker=$RP)
}

build_gallery() {  # KinFaceW-I's sons (real faces) + random unit vectors to 10,000; FindRelatives bodies
  $K enroll "$KIN"/images/father-son/*_2.jpg --embedder 127.0.0.1:$E --indexer 127.0.0.1:$I --source kinfacew-sons \
    --json >"$OUT/enroll.json" || grep -q '"enrolled"' "$OUT/enroll.json"  # exit 1: some 64x64 crops have no face
  $K loadtest 127.0.0.1:$I --call kinship.v1.Indexer/Upsert --batch 1000 -n 10 -c 1 --quiet --json -o "$OUT/upsert-10k.json"
  if [ "${FLUSH_GALLERY:-1}" = 1 ]; then
    # Restart the indexer so that Milvus Lite seals what the bulk load left in its growing segment
    # (searched by brute force: p50 1.7 s at 10k); the indexer has no flush call yet (issue 7).
    kill $IP; wait $IP 2>/dev/null || true
    KINSHIP_ACCESS_LOG_SAMPLE=0.01 $K serve indexer --port $I --health-port $HI --data-dir "$OUT/data" >>"$OUT/indexer.log" 2>&1 &
    IP=$!
    PIDS+=($IP)
    wait_serving 127.0.0.1:$I
    wait_serving 127.0.0.1:$R
    WATCH=(--watch embedder=$EP --watch indexer=$IP --watch ranker=$RP)
  fi
  $PY -c "
import grpc; from kinship.v1 import indexer_pb2 as p, indexer_pb2_grpc as g
c = g.IndexerStub(grpc.insecure_channel('127.0.0.1:$I')).ListCollections(p.ListCollectionsRequest(), timeout=30).collections
print('gallery:', [(x.model_id, x.record_count) for x in c])" >&2
  $PY scripts/find_requests.py 127.0.0.1:$E "$KIN" "$OUT/find-requests.json" >&2
}
