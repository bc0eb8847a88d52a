#!/usr/bin/env bash
# Capacity of each service and of FindRelatives end to end, by `kinship loadtest`, on this machine.
#
#   flock /tmp/kinship-heavy.lock bash scripts/measure_capacity.sh [OUT_DIR]
#
# Starts the three services on spare ports with a fresh data dir (scripts/suite_up.sh: embedder
# 50251, indexer 50252, ranker 50253, health-only ports 5026x), enrols KinFaceW-I's sons (real
# faces), fills the gallery to 10,000 people with random unit vectors (Upsert through the load
# tool) and restarts the indexer so Milvus Lite seals them, then measures: health calls (main port, health-only port, one vs two processes), Embed at
# its admission bound, Embed at twice that capacity (with health probed meanwhile), the
# client's percentiles against the server's own per-call log, Search, FindRelatives.
# Every report is kept in OUT_DIR as ghz-style JSON; a table is printed at the end.
#
# PARTS=health,embed (comma-separated, default all: health,embed,index,suite,processes) runs
# only those measurements; the 10k gallery is built only when index or suite is among them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/kinship-capacity}
PARTS=${PARTS:-health,embed,index,suite,processes}
part() { [[ ",$PARTS," == *",$1,"* ]]; }
PORTRAIT=$(.venv/bin/python -c 'from importlib import resources; print(resources.files("insightface") / "data/images/Tom_Hanks_54745.png")')
rm -rf "$OUT" && mkdir -p "$OUT"
source scripts/suite_up.sh
lt() { $K loadtest "$@" --quiet --json; }
# Closed loops on grpc's blocking client (--engine threads): the cheaper generator on shared cores.
ltt() { lt "$@" --engine threads; }

start_suite
# The embedder's admission bound (2 x its workers): its capacity is measured with that many callers.
BOUND=$($PY -c "
import json
for line in open('$OUT/embedder.log'):
    if '\"listening\"' in line:
        print(json.loads(line)['max_concurrent_calls']); break")
if part index || part suite; then
  echo "== services SERVING; building the 10k gallery" >&2
  build_gallery
fi

if part health; then
echo "== health calls through the runtime (threads and aio generators; main port and health-only port)" >&2
ltt 127.0.0.1:$E --call grpc.health.v1.Health/Check -c 16 -z 10s --warmup 2s "${WATCH[@]}" -o "$OUT/health-main.json"
lt 127.0.0.1:$E --call grpc.health.v1.Health/Check -c 16 -z 10s --warmup 2s "${WATCH[@]}" -o "$OUT/health-main-aio.json"
ltt 127.0.0.1:$HE --call grpc.health.v1.Health/Check -c 16 -z 10s --warmup 2s "${WATCH[@]}" -o "$OUT/health-port.json"
ltt 127.0.0.1:$E --call grpc.health.v1.Health/Check --rps 2000 -z 10s --warmup 2s "${WATCH[@]}" -o "$OUT/health-main-rps2000.json"
fi

if part embed; then
echo "== embed at its admission bound (closed loop, $BOUND callers = 2 x workers): the capacity" >&2
ltt 127.0.0.1:$E --call kinship.v1.Embedder/Embed --images "$KIN/images/father-son" -c $BOUND -z 20s --warmup 3s \
  --record "$OUT/embed-capacity-calls.csv" "${WATCH[@]}" -o "$OUT/embed-capacity.json"
$PY scripts/percentile_agreement.py "$OUT/embed-capacity.json" --timings "$OUT/embed-capacity-calls.csv" >"$OUT/embed-agreement-timings.json"
$PY scripts/percentile_agreement.py "$OUT/embed-capacity.json" --server-log "$OUT/embedder.log" --rpc /kinship.v1.Embedder/Embed >"$OUT/embed-agreement-server.json"
ltt 127.0.0.1:$E --call kinship.v1.Embedder/Embed --images "$PORTRAIT" -c $BOUND -z 20s --warmup 3s -o "$OUT/embed-portrait-capacity.json"

echo "== embed at twice its capacity (open loop), health probed on the health-only and the main port" >&2
RATE=$($PY -c "import json; print(round(2 * json.load(open('$OUT/embed-capacity.json'))['rps'], 1))")
$PY scripts/health_watch.py 127.0.0.1:$HE --seconds 22 --service kinship.v1.Embedder >"$OUT/health-port-during-overload.json" &
W1=$!
$PY scripts/health_watch.py 127.0.0.1:$E --seconds 22 --service kinship.v1.Embedder >"$OUT/health-main-during-overload.json" &
W2=$!
lt 127.0.0.1:$E --call kinship.v1.Embedder/Embed --images "$KIN/images/father-son" --rps "$RATE" -z 20s --warmup 2s \
  --record "$OUT/embed-overload-calls.csv" "${WATCH[@]}" -o "$OUT/embed-overload.json"
wait $W1 $W2
fi

if part index; then
echo "== indexer and ranker at 10k" >&2
ltt 127.0.0.1:$I --call kinship.v1.Indexer/Search -c 8 -z 20s --warmup 3s "${WATCH[@]}" -o "$OUT/search-10k.json"
for c in 2 4; do
  ltt 127.0.0.1:$R --call kinship.v1.KinshipRanker/FindRelatives --data-file "$OUT/find-requests.json" -c $c -z 20s --warmup 3s \
    "${WATCH[@]}" -o "$OUT/find-10k-c$c.json"
done
fi

if part suite; then
echo "== the suite under a mix of calls (docs/scenarios/suite.toml), closed and open loop" >&2
export EMBEDDER=127.0.0.1:$E INDEXER=127.0.0.1:$I RANKER=127.0.0.1:$R KINFACEW=$(realpath "$KIN") FIND_REQUESTS="$OUT/find-requests.json"
ltt --scenario docs/scenarios/suite.toml -c 3 -z 20s --warmup 3s "${WATCH[@]}" -o "$OUT/suite-mix-closed.json"
lt --scenario docs/scenarios/suite.toml --rps 10 -z 20s --warmup 3s "${WATCH[@]}" -o "$OUT/suite-mix-open.json"
fi

if part processes; then
echo "== one process vs two on one port" >&2
ltt 127.0.0.1:$E --call grpc.health.v1.Health/Check -c 16 --connections 4 -z 10s --warmup 2s -o "$OUT/health-1proc.json"
ltt 127.0.0.1:$E --call kinship.v1.Embedder/Embed --images "$KIN/images/father-son" -c $BOUND --connections 4 -z 20s --warmup 3s -o "$OUT/embed-1proc.json"
# The access log's cost: ListModels (no model work) with every call logged, then with 1 in 100.
ltt 127.0.0.1:$E --call kinship.v1.Embedder/ListModels -c 16 -z 10s --warmup 2s --watch embedder=$EP -o "$OUT/log-every-call.json"
kill $EP; wait $EP 2>/dev/null || true
KINSHIP_ACCESS_LOG_SAMPLE=0.01 $K serve embedder --port $E --artifacts-dir "$OUT/data/artifacts" >"$OUT/embedder-sampled.log" 2>&1 &
EP=$!
PIDS+=($EP)
wait_serving 127.0.0.1:$E
ltt 127.0.0.1:$E --call kinship.v1.Embedder/ListModels -c 16 -z 10s --warmup 2s --watch embedder=$EP -o "$OUT/log-sampled.json"
kill $EP; wait $EP 2>/dev/null || true
KINSHIP_LOG_LEVEL=warning $K serve embedder --port $E --processes 2 --artifacts-dir "$OUT/data/artifacts" >"$OUT/embedder-2proc.log" 2>&1 &
PIDS+=($!)
wait_serving 127.0.0.1:$E
sleep 5  # the second copy loads its models too
ltt 127.0.0.1:$E --call grpc.health.v1.Health/Check -c 16 --connections 4 -z 10s --warmup 2s -o "$OUT/health-2proc.json"
# Two copies admit twice the bound; the kernel spreads the 4 connections among them.
ltt 127.0.0.1:$E --call kinship.v1.Embedder/Embed --images "$KIN/images/father-son" -c $((2 * BOUND)) --connections 4 -z 20s --warmup 3s -o "$OUT/embed-2proc.json"
fi

$PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'run':32} {'count':>7} {'rps':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}  codes")
for path in sorted(out.glob("*.json")):
    report = json.loads(path.read_text())
    if not isinstance(report, dict) or "latencyDistribution" not in report:
        print(f"{path.stem:32} {json.dumps(report)[:200]}")
        continue
    pct = {d["percentage"]: d["latency"] / 1e6 for d in report["latencyDistribution"] or []}
    print(f"{path.stem:32} {report['count']:7d} {report['rps']:8.1f} {pct.get(50, 0):8.2f} {pct.get(90, 0):8.2f} "
          f"{pct.get(99, 0):8.2f} {pct.get(99.9, 0):9.2f}  {report['statusCodeDistribution']}")
    by_call = report["kinship"]["by_call"]
    if len(by_call) > 1:
        for name, stats in by_call.items():
            print(f"{'  ' + name.rsplit('.', 1)[-1]:32} {stats['count']:7d} {stats['rps']:8.1f} {stats['p50']:8.2f} {stats['p90']:8.2f} {stats['p99']:8.2f} {stats['p99.9']:9.2f}")
    by_status = report["kinship"]["by_status"]
    if len(by_status) > 1:
        for code, stats in by_status.items():
            print(f"{'  ' + code:32} {stats['count']:7d} {stats['rps']:8.1f} {stats['p50']:8.2f} {stats['p90']:8.2f} {stats['p99']:8.2f} {stats['p99.9']:9.2f}")
    for name, usage in (report["kinship"].get("processes") or {}).items():
        if usage["cpu_seconds"]:
            print(f"{'  cpu ' + name:32} {usage['cores_used']:.2f} cores, {usage['calls_per_cpu_second']} calls per CPU s")
EOF
