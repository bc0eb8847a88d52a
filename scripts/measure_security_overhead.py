"""What security costs per call: the suite in local plaintext mode beside the suite with mutual TLS.

    python scripts/measure_security_overhead.py [--rounds 5] [-n 10] [--json]

Starts two `kinship serve all --sample-gallery` suites at once on free ports (one plain,
one with `--tls-dir` from a fresh `kinship certs init`), then alternates rounds of N calls
on each (so both see the same machine noise) of DescribeScoring (the gates, no audit
event) and FindRelatives with the sample query (the gates, one ranker audit event and
the indexer's, each fsynced). Prints the median per suite and the ratio secure/plain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kinship.cli.client_commands import parse_relative
from kinship.runtime.clients import sync_channel
from kinship.security import certs
from kinship.security.client import ClientSecurity
from kinship.security.transport import ClientTls
from kinship.v1 import ranker_pb2, ranker_pb2_grpc

READY = "kinship: press Ctrl-C to stop"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def suite(root: Path, tls: Path | None):
    ports = dict(zip(("embedder", "indexer", "ranker"), free_ports(3), strict=True))
    cmd = [
        sys.executable,
        "-m",
        "kinship.cli.main",
        "serve",
        "all",
        "--sample-gallery",
        "--data-dir",
        str(root / "data"),
    ]
    if tls:
        cmd += ["--tls-dir", str(tls), "--as", "enroller"]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    log = root / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while READY not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"suite did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield ports["ranker"], root / "data"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def timed(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tls = root / "tls"
        certs.init(tls)
        certs.issue(tls, "enroller", role="enroller")
        certs.issue(tls, "searcher", role="searcher")
        (root / "plain").mkdir()
        (root / "secure").mkdir()
        with suite(root / "plain", None) as (plain_port, plain_data), suite(root / "secure", tls) as (secure_port, _):
            query = plain_data / "sample" / "queries" / "tom-hanks-mirrored.jpg"
            find = ranker_pb2.FindRelativesRequest(relatives=[parse_relative(f"self={query}", 0)], top_n=5)
            describe = ranker_pb2.DescribeScoringRequest()
            plain = ranker_pb2_grpc.KinshipRankerStub(
                sync_channel(f"127.0.0.1:{plain_port}", security=ClientSecurity())
            )
            secure = ranker_pb2_grpc.KinshipRankerStub(
                sync_channel(
                    f"localhost:{secure_port}",
                    security=ClientSecurity(tls=ClientTls(tls, "searcher"), case_id="bench", purpose="overhead"),
                )
            )
            samples: dict[str, dict[str, list[float]]] = {
                rpc: {"plain": [], "secure": []} for rpc in ("DescribeScoring", "FindRelatives")
            }
            for stub in (plain, secure):  # warm-up: connections, handshakes, first searches
                timed(lambda s=stub: s.FindRelatives(find, timeout=120), 3)
            for _ in range(args.rounds):
                for mode, stub in (("plain", plain), ("secure", secure)):
                    samples["DescribeScoring"][mode] += timed(
                        lambda s=stub: s.DescribeScoring(describe, timeout=30), args.n
                    )
                    samples["FindRelatives"][mode] += timed(lambda s=stub: s.FindRelatives(find, timeout=120), args.n)
    result = {
        rpc: {
            "plain_median_ms": round(statistics.median(by["plain"]), 2),
            "secure_median_ms": round(statistics.median(by["secure"]), 2),
            "ratio": round(statistics.median(by["secure"]) / statistics.median(by["plain"]), 3),
            "calls_each": len(by["plain"]),
        }
        for rpc, by in samples.items()
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for rpc, r in result.items():
            print(
                f"{rpc:<16} plain {r['plain_median_ms']} ms  mTLS+gates+audit {r['secure_median_ms']} ms  "
                f"ratio {r['ratio']}  ({r['calls_each']} calls each, alternating rounds)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
