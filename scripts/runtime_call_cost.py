"""Server CPU per call of the runtime's cheapest paths: a health check, and a refusal at admission.

    python scripts/runtime_call_cost.py [--seconds 4] [--callers 8] [--bare]

Starts, in a child process, a server through the suite's runtime (`start_server`: its
interceptors, admission, health) around a scripted Embedder whose calls wait until
released; one call is held so that admission (bound 1) is full. Then N blocking callers
send health checks, then Embed calls (each refused with RESOURCE_EXHAUSTED), twice each,
and the child's CPU time per call is printed (one JSON line per round). --bare serves the
health servicer alone on a plain grpc.aio server instead: the floor for a health call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship.loadtest.processes import cpu_seconds
from kinship.security.settings import server_settings
from kinship.v1 import embedder_pb2, embedder_pb2_grpc


class HeldEmbedder(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def Embed(self, request, context):
        if request.model_id == "hold":
            await self.release.wait()
        return embedder_pb2.EmbedResponse(model_id="echo")


class HeldService:
    name = "embedder"
    service_names = ("kinship.v1.Embedder",)

    def __init__(self) -> None:
        self.servicer = HeldEmbedder()

    def register(self, server) -> None:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(self.servicer, server)

    async def check_ready(self) -> None:
        return None

    async def close(self) -> None:
        self.servicer.release.set()


async def serve(bare: bool) -> None:
    if bare:
        from grpc_health.v1._async import HealthServicer

        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await server.stop(0)
        return
    from kinship.runtime import config
    from kinship.runtime.logs import configure_logging
    from kinship.runtime.server import start_server

    configure_logging("info", "json", "embedder")
    settings = config.resolve(server_settings("embedder", 0), {"port": "0", "max_concurrent_calls": "1"}, env={})
    running = await start_server(HeldService(), settings)
    print(running.port, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await running.stop(0.5)


def measure(pid: int, port: int, kind: str, seconds: float, callers: int) -> dict:
    count = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop() -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        embed = embedder_pb2_grpc.EmbedderStub(channel)
        image = b"x" * 20_000
        done = 0
        while time.monotonic() < stop:
            if kind == "health":
                health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            else:
                try:
                    embed.Embed(embedder_pb2.EmbedRequest(model_id="hold", image=image), timeout=5)
                    raise SystemExit("an Embed call was admitted: admission was not full")
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
            done += 1
        with lock:
            count[0] += done

    before, began = cpu_seconds(pid), time.monotonic()
    threads = [threading.Thread(target=loop) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, used = time.monotonic() - began, cpu_seconds(pid) - before
    return {
        "kind": kind,
        "calls_per_s": round(count[0] / elapsed),
        "server_cpu_us_per_call": round(used / count[0] * 1e6),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--bare", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.bare))
        return 0
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", *(["--bare"] if args.bare else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = int(child.stdout.readline())
        kinds = ["health", "health"]
        if not args.bare:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            held = embedder_pb2_grpc.EmbedderStub(channel).Embed.future(
                embedder_pb2.EmbedRequest(model_id="hold"), timeout=600
            )
            time.sleep(0.5)
            kinds = ["health", "refusal", "health", "refusal"]
        for kind in kinds:
            print(json.dumps({**measure(child.pid, port, kind, args.seconds, args.callers), "bare": args.bare}))
    finally:
        child.stdin.close()
        child.wait(30)
    if not args.bare:
        held.cancel()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
