"""grpc.health.v1 on its own plaintext port, answered by its own threads.

Probes must get the truth while the service is at capacity. The main server's health
answers come from the same event loop as the work; this one is a separate synchronous
grpc server with its own small thread pool and completion queue, so a probe never waits
behind request work, and the answer is the status the runtime last published.

It serves only grpc.health.v1 (no reflection, no service), in plaintext: kubelet's
native gRPC probes cannot do TLS, so with TLS on the main port the probes point here
(`--health-port`, `KINSHIP_<SERVICE>_HEALTH_PORT`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2_grpc


class HealthOnlyServer:
    def __init__(self, host: str, port: int):
        # The stock servicer guards its statuses with a lock: set from the event loop, read from these threads.
        self.servicer = health.HealthServicer()
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="health"),
            options=[("grpc.so_reuseport", 0)],
            # Probes are tiny; a flood of them must not grow a queue either.
            maximum_concurrent_rpcs=64,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self._server)
        address = f"{host}:{port}"
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(
                f"cannot listen for health on {address}: the port is taken; choose another with --health-port"
            ) from exc
        if self.port == 0:
            raise OSError(
                f"cannot listen for health on {address}: the port is taken; choose another with --health-port"
            )

    def start(self) -> HealthOnlyServer:
        self._server.start()
        return self

    def set(self, service: str, status: int) -> None:
        self.servicer.set(service, status)

    def enter_graceful_shutdown(self) -> None:
        self.servicer.enter_graceful_shutdown()

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()
