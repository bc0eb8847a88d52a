"""`kinship bench index`: the indexer's ingest, search latency, throughput and recall, measured.

    kinship bench index --rows N [--milvus-uri URI] [--dim 512] [--concurrency C] [--json]

Loads N synthetic clustered unit vectors through a real indexer (`kinship serve indexer`
started as a subprocess on a free port, so that it does not share this process's GIL),
waits for the vector index, then measures in one run:

- ingest rows/s through the indexer's BulkEnrol stream (C streams at once);
- single-query search latency (p50, p99) through the indexer, one query at a time;
- throughput (QPS) with C concurrent callers through the indexer, and calling Milvus
  directly with pymilvus on the same queries, filter and search parameters;
- recall@10 of the indexer's answers against exact cosine search computed with numpy;
- the CPU time each process spent (indexer, a local Milvus, this bench) per 1,000 rows
  ingested and per search: on a shared machine rows/s and QPS swing with its day, the
  CPU a unit of work costs much less, and it says where the time went.

Queries are stored vectors plus small noise (queries of random noise would make every
distance nearly equal and recall meaningless; see docs/milvus-notes.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship.runtime.processes import die_with_parent
from kinship.v1 import indexer_pb2, indexer_pb2_grpc

from .bench_commands import bench_kinds

TENANT = "bench"
TOP_K = 10
STREAM_BATCH = 1000
RECALL_QUERIES = 200
# The erasure measured at the end of a run: the first ERASED_PEOPLE people (4 rows each).
ERASED_PEOPLE = 100
ERASED_ROWS = 4 * ERASED_PEOPLE
# QPS is measured in this many alternating rounds of the indexer and direct pymilvus.
QPS_ROUNDS = 3
# Search latency counts as steady when the medians of three windows of this many searches
# differ by at most this fraction, one window to the next.
STEADY_WINDOW = 50
STEADY_TOLERANCE = 0.15
STARTUP_TIMEOUT_S = 300.0


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = bench_kinds(subparsers).add_parser(
        "index",
        help="ingest, search latency, QPS (indexer vs direct pymilvus) and recall@10 of the indexer",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--rows", type=int, required=True, help="rows to load")
    bench.add_argument(
        "--milvus-uri", default="", help="Milvus server URI (default: a Milvus Lite file in a temporary folder)"
    )
    bench.add_argument("--dim", type=int, default=512, help="embedding dimension [default 512]")
    bench.add_argument("--concurrency", type=int, default=4, help="concurrent callers for ingest and QPS [default 4]")
    bench.add_argument("--queries", type=int, default=1000, help="single-query searches for p50/p99 [default 1000]")
    bench.add_argument("--qps-seconds", type=float, default=15.0, help="seconds of each QPS measurement [default 15]")
    bench.add_argument("--index-type", default="HNSW", help="HNSW, IVF_FLAT, IVF_SQ8 or FLAT [default HNSW]")
    bench.add_argument("--index-build-params", default="", help='JSON, e.g. {"nlist": 1024}')
    bench.add_argument("--index-search-params", default="", help='JSON, e.g. {"nprobe": 32}')
    bench.add_argument("--clusters", type=int, default=0, help="clusters of the synthetic data [default rows/100]")
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument(
        "--settle-timeout",
        type=float,
        default=600.0,
        help="seconds to wait, once every row is indexed, for Milvus to finish re-indexing compacted "
        "segments before measuring search anyway [default 600]",
    )
    bench.add_argument(
        "--model-id",
        default="",
        help="measure the gallery of this model left by an earlier run with --keep and the same --rows, --dim, "
        "--clusters and --seed (the data is generated again for recall); no loading",
    )
    bench.add_argument(
        "--keep",
        action="store_true",
        help="keep the benchmark's collection afterwards (the report names its model_id, for --model-id)",
    )
    bench.add_argument(
        "--indexer-cpus",
        type=cpu_list,
        default=None,
        help="CPUs the indexer process may run on, e.g. 1 or 2-3 (Linux): with Milvus started under "
        "`taskset` on others, the indexer has cores of its own, as in a deployment [default: any]",
    )
    bench.add_argument(
        "--bench-cpus", type=cpu_list, default=None, help="CPUs this bench may run on, e.g. 0 [default: any]"
    )
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(func=run)


def cpu_list(text: str) -> frozenset[int]:
    """CPUs such as "1", "0,2" or "2-3", as `taskset -c` takes them; only CPUs this machine has."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CPU list such as 1, 0,2 or 2-3") from None
    available = os.cpu_count() or 1
    if not cpus or max(cpus) >= available or min(cpus) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} names CPUs this machine lacks (it has 0-{available - 1})")
    return frozenset(cpus)


def cpu_affinity(pids: Sequence[int]) -> list[int] | None:
    """The CPUs these processes may run on (all of them together), or None where that cannot be read."""
    try:
        return sorted(set().union(*(os.sched_getaffinity(pid) for pid in pids))) if pids else None
    except (AttributeError, OSError):  # not Linux, or a process gone
        return None


# Data ---------------------------------------------------------------------------------------


def clustered_vectors(rows: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around `clusters` random centres (like faces of many people, several each)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = np.empty((rows, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        owner = rng.integers(0, clusters, stop - start)
        block = centres[owner] + rng.standard_normal((stop - start, dim), dtype=np.float32) * (0.6 / np.sqrt(dim))
        data[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return data


def near_queries(data: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    picked = data[rng.integers(0, len(data), count)]
    noisy = picked + rng.standard_normal(picked.shape, dtype=np.float32) * (0.3 / np.sqrt(data.shape[1]))
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int, skip: int = 0) -> np.ndarray:
    """Row indexes of the k most cosine-similar rows per query (the data is unit-length),
    leaving out the first `skip` rows (erased from a reused gallery)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(skip, len(data), 200_000):
        scores = queries @ data[start : start + 200_000].T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        merged_rows = np.concatenate([best_rows, top + start], axis=1)
        order = np.argsort(-merged_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, order, axis=1)
        best_rows = np.take_along_axis(merged_rows, order, axis=1)
    return best_rows


# The indexer under test ------------------------------------------------------------------------


@dataclass
class Indexer:
    process: subprocess.Popen
    address: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_indexer(args: argparse.Namespace, milvus_uri: str, data_dir: Path) -> Iterator[Indexer]:
    port = _free_port()
    command = [
        sys.executable, "-m", "kinship.cli.main", "serve", "indexer",
        "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "-1",
        "--data-dir", str(data_dir), "--milvus-uri", milvus_uri,
        "--index-type", args.index_type, "--index-build-params", args.index_build_params,
        "--index-search-params", args.index_search_params,
        "--milvus-timeout-seconds", "120", "--log-level", "warning",
    ]  # fmt: skip
    log = open(data_dir / "indexer.log", "wb")  # noqa: SIM115 - closed in finally
    cpus = args.indexer_cpus
    # Set in the child before it starts a thread, so every thread of the indexer keeps to these CPUs.
    # The indexer dies with the bench, however it dies (runtime.processes).
    arm = die_with_parent()

    def before_exec() -> None:
        if arm is not None:
            arm()
        if cpus:
            os.sched_setaffinity(0, cpus)

    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=before_exec)
    indexer = Indexer(process, f"127.0.0.1:{port}")
    try:
        _wait_serving(indexer, data_dir / "indexer.log")
        yield indexer
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_serving(indexer: Indexer, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with grpc.insecure_channel(indexer.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if indexer.process.poll() is not None:
                raise SystemExit(f"the indexer exited with {indexer.process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(grpc.RpcError):
                if health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    return
            time.sleep(0.5)  # polling a bounded start-up wait
    raise SystemExit(f"the indexer did not become SERVING within {STARTUP_TIMEOUT_S:.0f} s")


# Measurements -------------------------------------------------------------------------------------


def _record(i: int, vector: np.ndarray) -> indexer_pb2.GalleryRecord:
    return indexer_pb2.GalleryRecord(
        record_id=f"r{i}",
        person_id=f"p{i // 4}",
        embedding=vector.tolist(),
        attributes={"birth_year": 1940 + i % 70, "sex": 1 + i % 2, "region": f"R{i % 20}"},
    )


def enrol_requests(model_id: str, data: np.ndarray, concurrency: int) -> list[list[bytes]]:
    """The BulkEnrol messages of each stream, serialised before the clock starts.

    Building 512 floats into a message costs the generator about as much CPU as the
    indexer spends storing them; on a 2-core machine shared by the generator, the indexer
    and Milvus, building them during the load would measure the generator, not the indexer.
    """
    streams = []
    for rows in np.array_split(np.arange(len(data)), concurrency):
        streams.append(
            [
                indexer_pb2.BulkEnrolRequest(
                    model_id=model_id,
                    tenant=TENANT,
                    records=[_record(int(i), data[i]) for i in rows[start : start + STREAM_BATCH]],
                ).SerializeToString()
                for start in range(0, len(rows), STREAM_BATCH)
            ]
        )
    return [stream for stream in streams if stream]


def ingest(channel: grpc.Channel, streams: list[list[bytes]], progress) -> float:
    """Loads every row through BulkEnrol, one stream per list of messages at once; returns rows/s."""
    # Messages go out as the bytes serialised beforehand (the identity serializer).
    bulk_enrol = channel.stream_stream(
        "/kinship.v1.Indexer/BulkEnrol",
        request_serializer=lambda message: message,
        response_deserializer=indexer_pb2.BulkEnrolResponse.FromString,
    )
    failures: list[str] = []
    enrolled = [0] * len(streams)

    def stream(slot: int) -> None:
        done = 0
        for reply in bulk_enrol(iter(streams[slot]), timeout=7200):
            failures.extend(f.reason for f in reply.failures)
            progress.update(int(reply.enrolled_total) - done)
            done = int(reply.enrolled_total)
        enrolled[slot] = done

    started = time.perf_counter()
    with ThreadPoolExecutor(len(streams)) as pool:
        list(pool.map(stream, range(len(streams))))
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} rows were refused, e.g. {failures[0]}")
    return sum(enrolled) / elapsed


def wait_for_index(
    stub, model_id: str, rows: int, settle_timeout: float, timeout: float = 7200
) -> tuple[float, float | None]:
    """Seconds until every row is indexed, and until nothing is pending any more (None when
    that took longer than `settle_timeout`: the search is then measured while Milvus works).

    Both matter on a server: Milvus indexes the segments of a load as they seal, then merges
    small segments (compaction) and indexes the merged ones again; until that ends its
    cores are busy and searches pay for it (at a million rows on 2 cores, for over half an hour).
    """
    started = time.perf_counter()
    indexed_s = None
    while True:
        stats = stub.Stats(indexer_pb2.StatsRequest(tenant=TENANT), timeout=120)
        mine = [c for c in stats.collections if c.collection.model_id == model_id]
        now = time.perf_counter() - started
        if mine and mine[0].collection.record_count >= rows and mine[0].indexed_rows >= rows:
            indexed_s = indexed_s or now
            if mine[0].pending_index_rows == 0:
                return indexed_s, now
            if now - indexed_s > settle_timeout:
                return indexed_s, None
        if now > timeout:
            raise SystemExit(f"the index was not built within {timeout:.0f} s: {mine}")
        time.sleep(2.0)  # polling Milvus's index build


def wait_for_steady_search(
    call, queries: np.ndarray, timeout: float, window: int = STEADY_WINDOW, tolerance: float = STEADY_TOLERANCE
) -> float | None:
    """Seconds until search latency is steady: the median of `window` searches within `tolerance`
    of the window before, twice running (None when that took longer than `timeout`).

    Nothing pending in the index is not the end of Milvus's work: its query node then swaps
    the indexed segments in for the ones it served, and searches meanwhile are slow (a p99 of
    335 ms measured seconds after the index reported done, docs/benchmarks.md, "Costs behind the defaults").
    """
    started = time.perf_counter()
    medians: list[float] = []
    i = 0
    while time.perf_counter() - started < timeout:
        times = []
        for _ in range(window):
            begun = time.perf_counter()
            call(queries[i % len(queries)])
            times.append(time.perf_counter() - begun)
            i += 1
        medians.append(float(np.median(times)))
        if len(medians) >= 3 and all(abs(medians[-k] - medians[-k - 1]) <= tolerance * medians[-k - 1] for k in (1, 2)):
            return time.perf_counter() - started
    return None


def service_search(stub, model_id: str, query: np.ndarray) -> list[str]:
    reply = stub.Search(
        indexer_pb2.SearchRequest(
            model_id=model_id,
            queries=[indexer_pb2.QueryEmbedding(embedding=query.tolist())],
            top_k=TOP_K,
            tenant=TENANT,
        ),
        timeout=30,
    )
    return [hit.record_id for hit in reply.results[0].hits]


def throughput(call, queries: np.ndarray, concurrency: int, seconds: float) -> float:
    """Queries per second with `concurrency` callers cycling over `queries` for `seconds`."""
    stop = time.perf_counter() + seconds
    counts = [0] * concurrency

    def worker(slot: int) -> None:
        i = slot
        while time.perf_counter() < stop:
            call(queries[i % len(queries)])
            counts[slot] += 1
            i += concurrency

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def _milvus_pids() -> list[int]:
    """Local Milvus processes (server or Lite), by their command name."""
    pids = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "milvus":
                    pids.append(int(entry.name))
    return pids


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a process has used, from /proc (None where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class CpuMeter:
    """CPU seconds used by named processes between two readings.

    A process that cannot be read (no /proc, Milvus not on this machine) is left out
    rather than counted as zero.
    """

    def __init__(self, pids: dict[str, list[int]]):
        self._pids = {name: ids for name, ids in pids.items() if ids}

    def read(self) -> dict[str, float]:
        readings: dict[str, float] = {}
        for name, ids in self._pids.items():
            seconds = [process_cpu_seconds(pid) for pid in ids]
            if all(s is not None for s in seconds):
                readings[name] = sum(seconds)  # type: ignore[arg-type]
        return readings

    @staticmethod
    def per_unit(before: dict[str, float], after: dict[str, float], units: float, scale: float) -> dict[str, float]:
        """Milliseconds of CPU per `scale` units of work, for each process read both times."""
        if units <= 0:
            return {}
        return {name: round(1000 * (after[name] - before[name]) * scale / units, 3) for name in before if name in after}


def milvus_rss_bytes() -> int | None:
    """Resident memory of a local Milvus process (server or Lite), when one runs on this machine."""
    total = 0
    for pid in _milvus_pids():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total or None


def run(args: argparse.Namespace) -> int:
    from pymilvus import MilvusClient
    from tqdm import tqdm

    from kinship.indexer.public import HIT_FIELDS, VectorIndex, collection_name, tenant_expression

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    if args.bench_cpus:
        os.sched_setaffinity(0, args.bench_cpus)  # before any thread of this bench starts

    clusters = args.clusters or max(1, args.rows // 100)
    say(f"generating {args.rows:,} clustered {args.dim}-d vectors ({clusters:,} clusters)")
    data = clustered_vectors(args.rows, args.dim, clusters, args.seed)
    queries = near_queries(data, max(args.queries, RECALL_QUERIES), args.seed)
    model_id = args.model_id or f"bench-{args.dim}d-{uuid.uuid4().hex[:8]}"
    vector_index = VectorIndex.parse(args.index_type, args.index_build_params, args.index_search_params)
    with tempfile.TemporaryDirectory(prefix="kinship-bench-") as folder:
        data_dir = Path(folder)
        milvus_uri = args.milvus_uri or str(data_dir / "bench.db")
        with (
            running_indexer(args, milvus_uri, data_dir) as indexer,
            grpc.insecure_channel(
                indexer.address,
                options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
            ) as channel,
        ):
            stub = indexer_pb2_grpc.IndexerStub(channel)
            pids = {"indexer": [indexer.process.pid], "milvus": _milvus_pids(), "bench": [os.getpid()]}
            meter = CpuMeter(pids)
            affinity = {process: cpu_affinity(of) for process, of in pids.items()}
            ingest_rate = None
            ingest_cpu: dict[str, float] = {}
            if not args.model_id:
                # Create the collection before the clock starts (its creation is not ingest), then erase the probe.
                probe = _record(0, data[0])
                probe.record_id = "probe"
                stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=[probe], tenant=TENANT), timeout=300)
                stub.Delete(
                    indexer_pb2.DeleteRequest(model_id=model_id, record_ids=["probe"], tenant=TENANT), timeout=300
                )
                streams = enrol_requests(model_id, data, args.concurrency)
                cpu_before = meter.read()
                with tqdm(total=args.rows, unit="rows", desc="loading", file=sys.stderr, disable=None) as bar:
                    ingest_rate = ingest(channel, streams, bar)
                ingest_cpu = CpuMeter.per_unit(cpu_before, meter.read(), args.rows, 1000)
                del streams
                say(f"ingest {ingest_rate:,.0f} rows/s; waiting for the index")
            expected_rows = args.rows - (ERASED_ROWS if args.model_id else 0)
            index_build_s, index_settled_s = wait_for_index(stub, model_id, expected_rows, args.settle_timeout)
            say(
                f"every row indexed after {index_build_s:.1f} s; "
                + (
                    f"nothing pending after {index_settled_s:.1f} s"
                    if index_settled_s is not None
                    else f"Milvus still re-indexing compacted segments after {args.settle_timeout:.0f} s more"
                )
                + "; measuring search"
            )
            # A reused gallery went through a run's erasure already: its erased rows are not expected.
            truth = exact_top_k(data, queries[:RECALL_QUERIES], TOP_K, skip=ERASED_ROWS if args.model_id else 0)
            found = [service_search(stub, model_id, q) for q in queries[:RECALL_QUERIES]]
            recall = float(
                np.mean([len({f"r{i}" for i in truth[n]} & set(found[n])) / TOP_K for n in range(RECALL_QUERIES)])
            )
            direct = MilvusClient(uri=milvus_uri) if args.milvus_uri else None
            name = collection_name(model_id)
            stats = stub.Stats(indexer_pb2.StatsRequest(tenant=TENANT), timeout=120)
            index_type = next(c.index_type for c in stats.collections if c.collection.model_id == model_id)
            search_params = {"metric_type": "COSINE", "params": vector_index.search_params_for(index_type, TOP_K)}

            def direct_search(query: np.ndarray) -> None:
                direct.search(
                    name,
                    data=[query],
                    limit=TOP_K,
                    filter=tenant_expression(TENANT),
                    output_fields=list(HIT_FIELDS),  # what the indexer reads for every hit
                    search_params=search_params,
                    consistency_level="Bounded",
                    timeout=30,
                )

            def indexer_search(query: np.ndarray) -> None:
                service_search(stub, model_id, query)

            # Milvus Lite admits one process per file (the indexer holds it): direct calls need a server.
            # Indexer and direct calls alternate, query by query and round by round, so that
            # background work in Milvus (compaction, index builds) weighs on both alike.
            paths = [indexer_search] + ([direct_search] if direct is not None else [])
            for query in queries[:20]:  # warm-up
                for path in paths:
                    path(query)
            search_steady_s = wait_for_steady_search(paths[-1], queries, args.settle_timeout)
            say(
                f"search latency steady after {search_steady_s:.1f} s more"
                if search_steady_s is not None
                else f"search latency still changing after {args.settle_timeout:.0f} s: measuring anyway"
            )
            latencies: dict[str, list[float]] = {path.__name__: [] for path in paths}
            for query in queries[: args.queries]:
                for path in paths:
                    started = time.perf_counter()
                    path(query)
                    latencies[path.__name__].append((time.perf_counter() - started) * 1000)
            qps: dict[str, float] = {path.__name__: 0.0 for path in paths}
            cpu_seconds: dict[str, dict[str, float]] = {path.__name__: {} for path in paths}
            searches: dict[str, float] = {path.__name__: 0.0 for path in paths}
            for _ in range(QPS_ROUNDS):
                for path in paths:
                    before, started = meter.read(), time.perf_counter()
                    rate = throughput(path, queries, args.concurrency, args.qps_seconds / QPS_ROUNDS)
                    searches[path.__name__] += rate * (time.perf_counter() - started)
                    qps[path.__name__] += rate
                    for process, used in CpuMeter.per_unit(before, meter.read(), 1, 1).items():
                        cpu_seconds[path.__name__][process] = cpu_seconds[path.__name__].get(process, 0.0) + used
            # What one search cost each process, over every round of each path.
            search_cpu = {
                path: {process: round(ms / searches[path], 3) for process, ms in used.items()}
                for path, used in cpu_seconds.items()
                if searches[path]
            }
            qps_service = qps["indexer_search"] / QPS_ROUNDS
            qps_direct = qps["direct_search"] / QPS_ROUNDS if direct is not None else None
            rss = milvus_rss_bytes()
            # Erasure: 100 people (400 records) erased, awaiting the compaction that reclaims them.
            erased = stub.Delete(
                indexer_pb2.DeleteRequest(
                    model_id=model_id,
                    person_ids=[f"p{i}" for i in range(ERASED_PEOPLE)],
                    tenant=TENANT,
                    await_compaction=True,
                ),
                timeout=3600,
            )
            server_version = direct.get_server_version() if direct is not None else "milvus-lite"
            if direct is not None and not args.keep:
                direct.drop_collection(name)
    p50, p99 = (float(np.percentile(latencies["indexer_search"], q)) for q in (50, 99))
    direct_p50, direct_p99 = (
        (float(np.percentile(latencies["direct_search"], q)) for q in (50, 99))
        if "direct_search" in latencies
        else (None, None)
    )
    result = {
        "rows": args.rows,
        "dim": args.dim,
        "backend": "server" if args.milvus_uri else "lite",
        "server_version": server_version,
        "index_type": index_type,
        "index_build_params": vector_index.build_params if index_type == vector_index.index_type else {},
        "search_params": search_params["params"],
        "concurrency": args.concurrency,
        "ingest_rows_per_s": None if ingest_rate is None else round(ingest_rate, 1),
        # Milliseconds of CPU per 1,000 rows loaded, per process (indexer, milvus where local, bench).
        "ingest_cpu_ms_per_1000_rows": ingest_cpu or None,
        "index_build_s": round(index_build_s, 2),
        "index_settled_s": None if index_settled_s is None else round(index_settled_s, 2),
        "search_steady_s": None if search_steady_s is None else round(search_steady_s, 2),
        "reused_gallery": bool(args.model_id),
        # What a later run passes as --model-id to measure a gallery this run kept.
        "model_id": model_id,
        "recall_at_10": round(recall, 4),
        "search_p50_ms": round(p50, 2),
        "search_p99_ms": round(p99, 2),
        "direct_search_p50_ms": None if direct_p50 is None else round(direct_p50, 2),
        "direct_search_p99_ms": None if direct_p99 is None else round(direct_p99, 2),
        "qps_service": round(qps_service, 1),
        "qps_direct": None if qps_direct is None else round(qps_direct, 1),
        "qps_ratio": None if not qps_direct else round(qps_service / qps_direct, 3),
        # Milliseconds of CPU per search during the QPS rounds, per process, for each path.
        "search_cpu_ms_per_query": {
            "service": search_cpu.get("indexer_search"),
            "direct": search_cpu.get("direct_search"),
        },
        "erased_rows": erased.deleted_count,
        "erase_with_compaction_s": round(erased.compaction_seconds, 2),
        "milvus_rss_bytes": rss,
        "milvus_rss_per_million_rows_bytes": None if rss is None else int(rss / args.rows * 1_000_000),
        "cpus": os.cpu_count(),
        # The CPUs each process could run on (--indexer-cpus, --bench-cpus; Milvus as it was started).
        "cpu_affinity": affinity,
        "machine": platform.machine(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:36} {value}")
    return 0
