"""Latency of single calls against a running suite (`kinship serve all`), side by side.

    python scripts/measure_latency.py IMAGE [--relative self=IMAGE ...] [-n 30] [--json]

Calls Embed with IMAGE, then FindRelatives with the relatives given, each N times one
after another (after 3 warm-up calls), and prints min / median / p95 / max in ms.
A stop-gap until `kinship bench` and `kinship loadtest` (their own issues) exist.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from kinship.cli.client_commands import parse_relative
from kinship.runtime.clients import sync_channel
from kinship.v1 import embedder_pb2, embedder_pb2_grpc, ranker_pb2, ranker_pb2_grpc


def timed(call, n: int) -> dict[str, float]:
    for _ in range(3):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "n": n,
        "min_ms": round(samples[0], 1),
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[min(n - 1, int(0.95 * n))], 1),
        "max_ms": round(samples[-1], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("--relative", action="append", default=[])
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    embedder = os.environ.get("KINSHIP_EMBEDDER_ADDRESS", "127.0.0.1:50051")
    ranker = os.environ.get("KINSHIP_RANKER_ADDRESS", "127.0.0.1:50053")
    results = {}
    with sync_channel(embedder) as channel:
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        request = embedder_pb2.EmbedRequest(image=args.image.read_bytes())
        faces = len(stub.Embed(request, timeout=60).faces)
        results[f"Embed ({args.image.name}, {faces} faces)"] = timed(lambda: stub.Embed(request, timeout=60), args.n)
    if args.relative:
        with sync_channel(ranker) as channel:
            stub = ranker_pb2_grpc.KinshipRankerStub(channel)
            relatives = [parse_relative(text, i) for i, text in enumerate(args.relative)]
            request = ranker_pb2.FindRelativesRequest(relatives=relatives, top_n=10)
            label = f"FindRelatives ({len(relatives)} relative(s), {sum(len(r.photos) for r in relatives)} photo(s))"
            results[label] = timed(lambda: stub.FindRelatives(request, timeout=60), args.n)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, r in results.items():
            print(
                f"{name:<48} n={r['n']}  min {r['min_ms']}  median {r['median_ms']}  p95 {r['p95_ms']}  max {r['max_ms']} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
