"""gRPC clients of the suite's own services: channels, health, and calls.

Used by the ranker (to reach the embedder and indexer) and by the CLI. A failed call
becomes the matching domain error (see `grpc_errors.from_rpc_error`), and the current
request id travels on as `x-request-id`, so one id follows a request through every
service's logs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

# kinship.security builds on the runtime; the modules imported here use only its errors and logs.
from kinship.security import client as client_security
from kinship.security import forwarding
from kinship.security.client import ClientSecurity
from kinship.security.transport import ClientTls

from . import errors, grpc_errors
from .interceptors import CALL_DEADLINE, REQUEST_ID_KEY
from .server import client_options

T = TypeVar("T")


def aio_channel(
    address: str, max_message_mb: float = 16.0, tls: ClientTls | None = None, **balancing: float
) -> grpc.aio.Channel:
    """An asyncio channel with the suite's message size limits, round_robin and keepalive.

    TLS with a client certificate when `tls` is given; `balancing`: `keepalive_seconds`,
    `dns_min_refresh_seconds` (see server.client_options).
    """
    return client_security.aio_channel(address, client_options(max_message_mb, **balancing), tls)


def sync_channel(address: str, max_message_mb: float = 16.0, security: ClientSecurity | None = None) -> grpc.Channel:
    """A blocking channel, for the CLI and tests: the process's ClientSecurity unless `security` is given."""
    return client_security.sync_channel(address, client_options(max_message_mb), security)


def request_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata that carries the current call onward: its request id, and its caller, case id and purpose."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    carried = ((REQUEST_ID_KEY, request_id),) if request_id else ()
    return carried + forwarding.outgoing_metadata()


async def call(
    method: Callable[..., Awaitable[T]],
    request: Any,
    *,
    service: str,
    timeout: float,
) -> T:
    """Calls a unary method of another service, turning failures into domain errors.

    The timeout is cut to what is left of the current call's deadline, so the other
    service learns how long the original caller will wait.
    """
    deadline = CALL_DEADLINE.get()
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.DeadlineExceeded(f"the caller's deadline passed before {service} could be called")
        timeout = min(timeout, left)
    try:
        return await method(request, timeout=timeout, metadata=request_metadata())
    except grpc.aio.AioRpcError as exc:
        raise grpc_errors.from_rpc_error(exc, service=service) from exc


async def check_serving(
    channel: grpc.aio.Channel, *, service: str, service_name: str = "", timeout: float = 2.0
) -> None:
    """Raises Unavailable unless the health service of `channel` says SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise errors.Unavailable(f"{service} health check failed: {exc.code().name} {exc.details()}") from exc
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise errors.Unavailable(f"{service} is {status}")
