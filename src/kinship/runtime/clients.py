"""gRPC clients of the suite's own services: channels, health, and calls.

Used by the ranker (to reach the embedder and indexer) and by the CLI. A failed call
becomes the matching domain error (see `grpc_errors.from_rpc_error`), and the current
request id travels on as `x-request-id`, so one id follows a request through every
service's logs. A call its dependency refused at admission (RESOURCE_EXHAUSTED, reason
OVERLOADED, with a retry hint) is sent again after the hint, a bounded number of times and
only while the wait fits in the caller's deadline (see `call`).
"""

from __future__ import annotations

import asyncio
import random
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
from .deadlines import CALL_DEADLINE
from .interceptors import REQUEST_ID_KEY
from .logs import get_logger
from .server import client_options

T = TypeVar("T")

log = get_logger("kinship.clients")

#: How many times a call refused by a dependency's admission control is sent again.
OVERLOAD_RETRIES = 2


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
    overload_retries: int = OVERLOAD_RETRIES,
) -> T:
    """Calls a unary method of another service, turning failures into domain errors.

    The timeout is cut to what is left of the current call's deadline (`deadlines.CALL_DEADLINE`:
    the caller's, capped by this deployment, less the answer margin), so the other service
    learns how long the original caller will wait.

    A refusal by the dependency's admission control (RESOURCE_EXHAUSTED, reason
    OVERLOADED, with RetryInfo) means the call did no work there, so it is safe to send
    again, whatever the method: after the hint (jittered 0.5-1.5x, so that refused callers
    do not return together), at most `overload_retries` times, and only while the wait
    plus about one call (the hint is the dependency's recent call time) fits in what is
    left of `timeout` and the caller's deadline. Otherwise the refusal goes to the caller
    with the hint, as before. A momentary spike then costs a caller some milliseconds
    instead of an error; sustained overload still reaches the caller within its deadline.
    """
    deadline = CALL_DEADLINE.get()
    end = time.monotonic() + timeout
    if deadline is not None:
        if deadline - time.monotonic() <= 0:
            raise errors.DeadlineExceeded(f"the caller's deadline passed before {service} could be called")
        end = min(end, deadline)
    attempt = 0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise errors.DeadlineExceeded(
                f"{service} was at capacity until the caller's deadline ({attempt} retries after its hint)"
            )
        try:
            return await method(request, timeout=left, metadata=request_metadata())
        except grpc.aio.AioRpcError as exc:
            error = grpc_errors.from_rpc_error(exc, service=service)
            wait = overload_wait_seconds(error)
            if attempt >= overload_retries or wait is None or time.monotonic() + 2 * wait > end:
                raise error from exc
        attempt += 1
        log.info(
            "dependency at capacity; sending again after its hint",
            dependency=service,
            wait_ms=round(wait * 1000),
            attempt=attempt,
        )
        await asyncio.sleep(wait)


def overload_wait_seconds(error: errors.KinshipError) -> float | None:
    """How long to wait before sending a call that `error` refused again; None: do not send it again.

    Only an admission refusal (OVERLOADED with a retry hint) qualifies: a rate limit is the
    caller's own, and anything else may have done work.
    """
    hint_ms = getattr(error, "retry_after_ms", None)
    if error.status_name != "RESOURCE_EXHAUSTED" or error.reason != "OVERLOADED" or hint_ms is None:
        return None
    return hint_ms / 1000 * random.uniform(0.5, 1.5)


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
