"""FindRelatives latency with two relatives, `kinship serve all --sample-gallery`, with and without the kinship model.

    python scripts/kinship_serving_cost.py DATA_DIR shipped|none

Starts a suite on DATA_DIR (a fresh folder: the shipped artifact; `none`: ACTIVE says
none, identity only), asks FindRelatives with a father and a mother photo of the sample
gallery 30 times after a warm-up, prints p50 and p90 as JSON, and stops the suite. Run
`shipped` and `none` alternately, twice each, on fresh folders to compare them.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

from kinship.v1 import common_pb2, ranker_pb2, ranker_pb2_grpc

CALLS = 30


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def main(data: Path, mode: str) -> None:
    if mode == "none":
        (data / "artifacts").mkdir(parents=True, exist_ok=True)
        (data / "artifacts" / "ACTIVE").write_text("none\n")
    ports = dict(zip(("embedder", "indexer", "ranker"), free_ports(3), strict=True))
    command = [sys.executable, "-m", "kinship.cli.main", "serve", "all", "--sample-gallery", "--data-dir", str(data)]
    for name, port in ports.items():
        command += [f"--{name}-port", str(port)]
    log_path = data.parent / f"{data.name}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        while "press Ctrl-C" not in log_path.read_text():
            if process.poll() is not None:
                raise SystemExit(f"the suite stopped; see {log_path}")
            time.sleep(0.5)
        gallery = data / "sample" / "gallery"
        request = ranker_pb2.FindRelativesRequest(top_n=5)
        for relation, name in (
            (common_pb2.RELATION_FATHER, "group-person-1.jpg"),
            (common_pb2.RELATION_MOTHER, "group-person-2.jpg"),
        ):
            relative = request.relatives.add()
            relative.relation = relation
            relative.photos.add(image=(gallery / name).read_bytes())
        with grpc.insecure_channel(f"127.0.0.1:{ports['ranker']}") as channel:
            stub = ranker_pb2_grpc.KinshipRankerStub(channel)
            stub.FindRelatives(request, timeout=60)
            latencies = []
            for _ in range(CALLS):
                started = time.perf_counter()
                reply = stub.FindRelatives(request, timeout=60)
                latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        print(
            json.dumps(
                {
                    "mode": mode,
                    "calibrated": reply.scoring.calibrated,
                    "p50_ms": statistics.median(latencies),
                    "p90_ms": latencies[int(0.9 * CALLS) - 1],
                    "calls": CALLS,
                }
            )
        )
    finally:
        process.terminate()
        process.wait(60)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
