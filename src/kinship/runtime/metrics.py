"""Prometheus metrics shared by the services (served on --metrics-port when set)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RPC_TOTAL = Counter(
    "kinship_rpc_total",
    "gRPC calls handled, by service, method and status code",
    ["service", "method", "code"],
)
RPC_SECONDS = Histogram(
    "kinship_rpc_duration_seconds",
    "gRPC call duration in seconds, by service and method",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def observe_rpc(service: str, method: str, code: str, seconds: float) -> None:
    RPC_TOTAL.labels(service, method, code).inc()
    RPC_SECONDS.labels(service, method).observe(seconds)


def http_bind_host(host: str) -> str:
    """The host as a socket bind address: gRPC's bracketed IPv6 form (`[::]`, `[::1]`) unbracketed.

    The services take one --host for gRPC and metrics; gRPC wants `[::]:port`, while
    getaddrinfo (under prometheus_client's HTTP server) rejects the brackets.
    """
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def serve_metrics(host: str, port: int) -> int:
    """Starts the /metrics HTTP endpoint on the same host as gRPC; returns the port it listens on."""
    server, _thread = start_http_server(port, addr=http_bind_host(host))
    return server.server_port
