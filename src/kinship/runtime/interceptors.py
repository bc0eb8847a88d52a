"""Server interceptors: request id, log context, metrics, and error mapping.

Cross-cutting work lives here rather than in every handler. For each unary call:
- the request id comes from the `x-request-id` metadata, or a new one is made, and is
  sent back as `x-request-id` initial metadata;
- it is bound into structlog's contextvars, so every log line of the call has it;
- the caller's deadline is kept in `CALL_DEADLINE`, so calls to other services made
  while handling this one never outlive it (see `clients.call`);
- a `KinshipError` becomes its status code with google.rpc.Status details; any other
  exception becomes INTERNAL with the request id (never a bare UNKNOWN);
- one line is logged per call with its code and duration, and metrics are counted.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
import uuid

import grpc
import structlog

from . import errors, grpc_errors, metrics
from .logs import get_logger

REQUEST_ID_KEY = "x-request-id"
_QUIET_PREFIXES = ("/grpc.health.", "/grpc.reflection.")

log = get_logger("kinship.rpc")

#: time.monotonic() by which the current call must finish (the caller's deadline), if it set one.
CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("kinship_call_deadline", default=None)


def _request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == REQUEST_ID_KEY and value:
            # Bounded and printable: it ends up in logs.
            return str(value)[:128]
    return uuid.uuid4().hex


class CallContextInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-unary handler with request id, logging, metrics and error mapping."""

    def __init__(self, service: str, *, access_log_sample: float = 1.0):
        self._service = service
        # Fraction of successful calls logged (errors always are): one line per call costs
        # about as much as a health check itself, so at thousands of calls/s it is sampled.
        self._access_log_sample = access_log_sample

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        quiet = method.startswith(_QUIET_PREFIXES)
        inner = handler.unary_unary
        request_id = _request_id(handler_call_details)
        service = self._service
        sample = self._access_log_sample

        async def wrapped(request, context: grpc.aio.ServicerContext):
            tokens = structlog.contextvars.bind_contextvars(service=service, request_id=request_id, rpc=method)
            remaining = context.time_remaining()
            deadline_token = CALL_DEADLINE.set(None if remaining is None else time.monotonic() + remaining)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
                result = inner(request, context)
                if asyncio.iscoroutine(result):
                    result = await result
                return result
            except errors.KinshipError as exc:
                code = grpc_errors.status_code_of(exc)
                log.warning("rpc refused", code=code.name, error=exc.message, reason=exc.reason)
                await grpc_errors.abort_with(context, exc)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception:  # noqa: BLE001 - last resort: log with stack, answer INTERNAL
                code = grpc.StatusCode.INTERNAL
                log.exception("rpc failed unexpectedly")
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"internal error in {service}; quote request id {request_id} when reporting it",
                )
            finally:
                elapsed = time.perf_counter() - started
                metrics.observe_rpc(service, method, code.name, elapsed)
                if not quiet and (code is not grpc.StatusCode.OK or sample >= 1.0 or random.random() < sample):
                    log.info("rpc finished", code=code.name, duration_ms=round(elapsed * 1000, 2))
                structlog.contextvars.reset_contextvars(**tokens)
                CALL_DEADLINE.reset(deadline_token)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
