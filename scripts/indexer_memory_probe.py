"""Where does a Lite indexer's memory go under the soak's reads? A slope or a step, and whose.

    python scripts/indexer_memory_probe.py --minutes 6 --rate 10 [--diagnose] [--env MALLOC_ARENA_MAX=2]

Starts `kinship serve indexer` on a fresh Milvus Lite data dir, fills it with 10,000
random 128-d records (10 x 1,000), restarts it so Milvus Lite seals them (as
scripts/suite_up.sh does), then replays what FindRelatives asks of the indexer: a Search
(one query, top 100, as the ranker's candidate_k) and a GetRecords of the people it found,
`--rate` pairs per second from a pool of 64 fixed queries (the soak's 64 request bodies).
Prints the indexer's resident memory every `--every` seconds, with the p50/p99 of the
Search and GetRecords calls since the previous line (client side). With --diagnose the indexer
also writes, at each sample, Python's heap (pymalloc blocks, objects by type) and glibc
malloc's (in use vs. free but kept, arenas) to OUT/heap.jsonl, and at the last sample
calls malloc_trim(0) and notes the RSS after it: Python objects versus the allocator. `--env MALLOC_ARENA_MAX=2` runs the indexer with that allocator setting.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np

from kinship.loadtest.processes import rss_bytes
from kinship.v1 import indexer_pb2, indexer_pb2_grpc

MODEL = "probe-model@1"
DIM = 128

# Runs `kinship serve indexer ...` and, on SIGUSR1, appends one JSON line to DIR/heap.jsonl:
# Python's own heap (pymalloc blocks, gc-tracked objects by type), glibc malloc's totals
# over all its arenas (mallinfo2: in use vs. free but kept) and the number of arenas and
# threads. Cheap enough to run beside the load (tracemalloc slowed Milvus Lite's pure
# Python search past every deadline).
DIAGNOSED = r"""
import collections, ctypes, gc, json, os, re, signal, sys, threading, time
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
out_dir = sys.argv[1]
previous = {}
def dump(*_):
    global previous
    gc.collect()
    types = collections.Counter(type(o).__name__ for o in gc.get_objects())
    growth = {k: v - previous.get(k, 0) for k, v in types.items() if v - previous.get(k, 0)}
    previous = types
    info = libc.mallinfo2()
    path = f"{out_dir}/malloc-info.xml".encode()
    handle = libc.fopen(path, b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    arenas = len(re.findall(r"<heap nr=", open(path.decode()).read()))
    rss = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmRSS:"))) * 1024
    line = {
        "time": time.time(), "rss_mib": rss / 2**20, "pymalloc_blocks": sys.getallocatedblocks(),
        "gc_objects": sum(types.values()), "threads": threading.active_count(), "malloc_arenas": arenas,
        "malloc_in_use_mib": (info.uordblks + info.hblkhd) / 2**20, "malloc_free_kept_mib": info.fordblks / 2**20,
        "malloc_mmap_mib": info.hblkhd / 2**20, "malloc_heap_mib": info.arena / 2**20,
        "object_growth_top": dict(sorted(growth.items(), key=lambda kv: -abs(kv[1]))[:8]),
    }
    if not os.path.exists(f"{out_dir}/trim-now"):
        with open(f"{out_dir}/heap.jsonl", "a") as out:
            out.write(json.dumps(line) + "\n")
        return
    # The last sample: what of that is memory the allocator keeps free? Give it back and look again.
    libc.malloc_trim(0)
    line["rss_after_malloc_trim_mib"] = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmRSS:"))) / 1024
    with open(f"{out_dir}/heap.jsonl", "a") as out:
        out.write(json.dumps(line) + "\n")
signal.signal(signal.SIGUSR1, dump)
from kinship.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def start(data_dir: Path, port: int, out: Path, traced: bool, env: dict[str, str]) -> subprocess.Popen:
    args = ["serve", "indexer", "--port", str(port), "--data-dir", str(data_dir)]
    full_env = {**os.environ, "KINSHIP_ACCESS_LOG_SAMPLE": "0.01", "KINSHIP_LOG_LEVEL": "warning", **env}
    command = (
        [sys.executable, "-c", DIAGNOSED, str(out), *args]
        if traced
        else [sys.executable, "-m", "kinship.cli.main", *args]
    )
    log = open(out / "indexer.log", "a")  # noqa: SIM115 - the child writes to it for its life
    process = subprocess.Popen(command, env=full_env, stdout=log, stderr=log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            if (
                health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                == health_pb2.HealthCheckResponse.SERVING
            ):
                return process
        except grpc.RpcError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit("the indexer did not become SERVING in 120 s; see indexer.log")


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    v = rng.normal(size=(count, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=10.0, help="Search+GetRecords pairs per second")
    parser.add_argument("--threads", type=int, default=4, help="callers sharing the rate")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between memory samples")
    parser.add_argument("--port", type=int, default=50291)
    parser.add_argument("--diagnose", action="store_true", help="allocator and object counts on each sample")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the indexer's environment")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="indexer-memory-"))
    out.mkdir(parents=True, exist_ok=True)
    env = dict(item.split("=", 1) for item in args.env)
    data = out / "data"
    rng = np.random.default_rng(7)

    process = start(data, args.port, out, False, env)
    stub = indexer_pb2_grpc.IndexerStub(grpc.insecure_channel(f"127.0.0.1:{args.port}"))
    for _ in range(10):
        vectors = unit(rng, 1000)
        records = [
            indexer_pb2.GalleryRecord(record_id=uuid.uuid4().hex, person_id=f"p-{uuid.uuid4().hex[:12]}", embedding=v)
            for v in vectors
        ]
        stub.Upsert(indexer_pb2.UpsertRequest(model_id=MODEL, records=records), timeout=60)
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    process = start(data, args.port, out, args.diagnose, env)  # sealed, as after suite_up.sh's restart
    try:
        queries = unit(rng, 64)
        stop = threading.Event()
        counts = {"ok": 0, "errors": 0}
        latencies: list[tuple[float, float]] = []  # (Search, GetRecords) seconds, since the last sample

        def drive(offset: int, threads: int) -> None:
            channel = grpc.insecure_channel(f"127.0.0.1:{args.port}")
            client = indexer_pb2_grpc.IndexerStub(channel)
            interval = threads / args.rate
            due = time.monotonic() + offset * interval / threads
            i = offset
            while not stop.is_set():
                time.sleep(max(0.0, due - time.monotonic()))
                due += interval
                try:
                    t0 = time.perf_counter()
                    found = client.Search(
                        indexer_pb2.SearchRequest(
                            model_id=MODEL, queries=[indexer_pb2.QueryEmbedding(embedding=queries[i % 64])], top_k=100
                        ),
                        timeout=10,
                    )
                    people = sorted({h.person_id for h in found.results[0].hits})
                    t1 = time.perf_counter()
                    client.GetRecords(indexer_pb2.GetRecordsRequest(model_id=MODEL, person_ids=people), timeout=10)
                    latencies.append((t1 - t0, time.perf_counter() - t1))
                    counts["ok"] += 1
                except grpc.RpcError as exc:
                    counts["errors"] += 1
                    print("error:", exc.code().name, exc.details(), file=sys.stderr)
                i += threads

        threads = [threading.Thread(target=drive, args=(n, args.threads), daemon=True) for n in range(args.threads)]
        began = time.monotonic()
        print(
            f"minute  rss_MiB  pairs_done  errors  Search p50/p99 ms  GetRecords p50/p99 ms   (indexer pid {process.pid}, out {out})",
            flush=True,
        )
        print(f"{0:6.1f}  {rss_bytes(process.pid) / 2**20:7.1f}  {0:10d}  {0:6d}", flush=True)
        if args.diagnose:
            process.send_signal(signal.SIGUSR1)
        for t in threads:
            t.start()
        while time.monotonic() - began < args.minutes * 60:
            time.sleep(args.every)
            if args.diagnose:
                if time.monotonic() - began + args.every / 2 >= args.minutes * 60:
                    (out / "trim-now").touch()  # the last sample ends with malloc_trim(0)
                process.send_signal(signal.SIGUSR1)
            minutes = (time.monotonic() - began) / 60
            window, latencies[:] = list(latencies), []
            shown = ""
            if window:
                search, get = (np.percentile(np.array(column) * 1000, [50, 99]) for column in zip(*window, strict=True))
                shown = f"  {search[0]:7.1f} / {search[1]:6.1f}     {get[0]:7.1f} / {get[1]:6.1f}"
            print(
                f"{minutes:6.1f}  {rss_bytes(process.pid) / 2**20:7.1f}  {counts['ok']:10d}  {counts['errors']:6d}{shown}",
                flush=True,
            )
        stop.set()
        for t in threads:
            t.join(15)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
