"""What the runtime's interceptor chain costs each call: a trivial Search handler, served
the production way, called one call at a time, against the same handler with less of the
chain in front of it.

    python scripts/chain_cost.py [--calls 2000] [--rounds 5]

Each variant is its own server process (`start_server` through `ServerThread`: the
runtime's interceptor, the call context, the security interceptor with its audit file,
admission); the client calls them in alternating rounds so that the machine's noise weighs
on all alike, and prints p50/p90/p99 per variant:

- `full`: the whole chain, as served;
- `no-audit`: the same, with the audit event skipped;
- `call-context-only`: only the runtime's call context (request id, logs, metrics);
- `bare`: no chain at all (grpc alone).

The differences are what each part adds to a call (docs/benchmarks.md, "Costs behind the defaults").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time

import grpc
import numpy as np

VARIANTS = ("full", "no-audit", "call-context-only", "bare")
CASE = (("x-case-id", "chain-cost"), ("x-purpose", "measuring the interceptor chain"))


def serve(variant: str, ports, stop) -> None:
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the server's own log lines, for its whole life
    from kinship.audit import trail
    from kinship.runtime import config
    from kinship.runtime import interceptors as runtime_interceptors
    from kinship.runtime.server import ServerThread
    from kinship.security.settings import server_settings
    from kinship.v1 import common_pb2, indexer_pb2, indexer_pb2_grpc

    if variant in ("bare", "call-context-only"):
        keep = 0 if variant == "bare" else 1
        original = runtime_interceptors.RuntimeInterceptor.__init__

        def shortened(self, service, chain, admission=None):
            original(self, service, chain[:keep], admission)

        runtime_interceptors.RuntimeInterceptor.__init__ = shortened
    if variant == "no-audit":

        async def skip(self, event):
            return None

        trail.AuditTrail.record = skip

    hits = [
        indexer_pb2.SearchHit(
            record_id=f"r{i}",
            person_id=f"p{i}",
            similarity=0.5,
            attributes=common_pb2.PersonAttributes(birth_year=1980, sex=common_pb2.SEX_FEMALE, region="R1"),
        )
        for i in range(10)
    ]

    class Trivial(indexer_pb2_grpc.IndexerServicer):
        async def Search(self, request, context):
            return indexer_pb2.SearchResponse(results=[indexer_pb2.QueryResult(hits=hits)])

    class Service:
        name = "indexer"
        service_names = (indexer_pb2.DESCRIPTOR.services_by_name["Indexer"].full_name,)

        def register(self, server):
            indexer_pb2_grpc.add_IndexerServicer_to_server(Trivial(), server)

        async def check_ready(self):
            return None

        async def close(self):
            return None

    with tempfile.TemporaryDirectory() as folder:
        settings = config.resolve(
            server_settings("indexer", 0),
            {"port": "0", "host": "127.0.0.1", "log_level": "error", "data_dir": folder},
            env={},
        )
        with ServerThread(lambda _settings: Service(), settings) as server:
            ports[variant] = server.port
            stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per variant and round [2000]")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from kinship.v1 import indexer_pb2, indexer_pb2_grpc

    manager = multiprocessing.Manager()
    ports, stop = manager.dict(), manager.Event()
    servers = [multiprocessing.Process(target=serve, args=(v, ports, stop), daemon=True) for v in VARIANTS]
    for process in servers:
        process.start()
    deadline = time.monotonic() + 120
    while len(ports) < len(VARIANTS):
        if time.monotonic() > deadline:
            raise SystemExit("the servers did not start within 120 s")
        time.sleep(0.2)  # polling the servers' start
    query = np.random.default_rng(1).standard_normal(512).astype(np.float32)
    request = indexer_pb2.SearchRequest(
        model_id="m", queries=[indexer_pb2.QueryEmbedding(embedding=query.tolist())], top_k=10
    )
    stubs = {v: indexer_pb2_grpc.IndexerStub(grpc.insecure_channel(f"127.0.0.1:{ports[v]}")) for v in VARIANTS}
    for stub in stubs.values():
        for _ in range(200):  # warm-up
            stub.Search(request, timeout=10, metadata=CASE)
    latencies: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant, stub in stubs.items():
            for _ in range(args.calls):
                started = time.perf_counter()
                stub.Search(request, timeout=10, metadata=CASE)
                latencies[variant].append((time.perf_counter() - started) * 1000)
    print(f"{'variant':20} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for variant in VARIANTS:
        p50, p90, p99 = np.percentile(latencies[variant], [50, 90, 99])
        print(f"{variant:20} {p50:8.3f} {p90:8.3f} {p99:8.3f}")
    stop.set()
    for process in servers:
        process.join(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
