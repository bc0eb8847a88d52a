"""Polls grpc.health.v1 at ADDRESS every INTERVAL for SECONDS; prints the statuses seen as JSON.

    python scripts/health_watch.py 127.0.0.1:50161 --seconds 20 [--service kinship.v1.Embedder]

Used beside an overload run (scripts/measure_capacity.sh) to show that health stays
SERVING while the service refuses the excess. Each probe has a 1 s deadline, as a
kubelet probe would; a probe that fails or times out is counted by its status code.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--service", default="")
    args = parser.parse_args()
    seen: Counter[str] = Counter()
    slowest_ms = 0.0
    end = time.monotonic() + args.seconds
    with grpc.insecure_channel(args.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=1.0)
                seen[health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)] += 1
            except grpc.RpcError as exc:
                seen[exc.code().name] += 1
            slowest_ms = max(slowest_ms, (time.perf_counter() - started) * 1000)
            time.sleep(args.interval)
    print(json.dumps({"address": args.address, "statuses": dict(seen), "slowest_probe_ms": round(slowest_ms, 2)}))


if __name__ == "__main__":
    main()
