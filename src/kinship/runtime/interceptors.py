"""Server interceptors: request id, log context, metrics, and error mapping.

Cross-cutting work lives here rather than in every handler. For each unary call:
- the request id comes from the `x-request-id` metadata, or a new one is made, and is
  sent back as `x-request-id` initial metadata;
- it is bound into structlog's contextvars, so every log line of the call has it;
- the caller's deadline, less the answer margin, is bound as `deadlines.CALL_DEADLINE`,
  so calls to other services and to Milvus made while handling this one never outlive it;
- a `KinshipError` becomes its status code with google.rpc.Status details; any other
  exception becomes INTERNAL with the request id (never a bare UNKNOWN);
- one line is logged per call with its code and duration, and metrics are counted.

The server has one interceptor, `RuntimeInterceptor`, which runs these and the security
interceptors as a chain, after two fast paths decided from the method name alone:
health and reflection calls go straight to their handler (none of the per-call work
above: a probe is answered at the cost of grpc itself), and a call of a unary method
while admission control has every slot taken is refused at once (see admission.py).
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import uuid
from collections.abc import Callable

import grpc
import structlog

from . import errors, grpc_errors, metrics
from .admission import EXEMPT_PREFIXES, Admission
from .deadlines import CALL_DEADLINE, work_deadline
from .logs import get_logger

REQUEST_ID_KEY = "x-request-id"
_QUIET_PREFIXES = ("/grpc.health.", "/grpc.reflection.")

log = get_logger("kinship.rpc")


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
            deadline_token = CALL_DEADLINE.set(work_deadline(context.time_remaining()))
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


class _RefusalLog:
    """At most one log line per `interval` seconds for refusals of a flood, with how many it stands for."""

    def __init__(self, interval: float = 1.0):
        self._interval = interval
        self._next = 0.0
        self._unlogged = 0

    def note(self, **fields) -> None:
        now = time.monotonic()
        if now < self._next:
            self._unlogged += 1
            return
        log.warning("rpc refused", refused_since_last_line=self._unlogged + 1, **fields)
        self._unlogged = 0
        self._next = now + self._interval


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    """The server's one interceptor: fast paths first, then `chain` (outermost first) for everything else.

    - Health and reflection: the handler itself, untouched: no request id, log, metrics,
      security or admission work, so probes and ghz-style health loads cost grpc alone.
    - A unary method of the service while `admission` has every slot taken: RESOURCE_EXHAUSTED
      with the retry hint (RetryInfo, grpc-retry-pushback-ms) and the request id in the
      trailers, before any interceptor of the chain runs and without parsing the request;
      `on_shed` (the security layer's audit) is told of it, and audits such refusals as one
      event per method a second.
      Only methods already seen to be unary qualify (a method's first call takes the chain),
      so a streaming method is never answered by a unary handler.
    - Everything else: the chain, as grpc would run it.
    """

    def __init__(
        self,
        service: str,
        chain: list[grpc.aio.ServerInterceptor],
        admission: Admission | None = None,
        on_shed: Callable[[str, str, str], None] | None = None,
    ):
        self._service = service
        self._chain = tuple(chain)
        self._admission = admission
        # Told (method, peer, reason) of each call refused at capacity: the audit summarises them.
        self._on_shed = on_shed
        self._unary: set[str] = set()
        self._refusal_log = _RefusalLog()

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(EXEMPT_PREFIXES):
            return await continuation(handler_call_details)
        admission = self._admission
        if admission is not None and admission.full and method in self._unary:
            return self._refusal(method, handler_call_details)
        handler = await self._run(0, continuation, handler_call_details)
        if handler is not None and handler.unary_unary is not None:
            self._unary.add(method)
        return handler

    async def _run(self, index: int, continuation, handler_call_details):
        if index == len(self._chain):
            return await continuation(handler_call_details)
        rest = functools.partial(self._run, index + 1, continuation)
        return await self._chain[index].intercept_service(rest, handler_call_details)

    def _refusal(self, method: str, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        assert self._admission is not None
        error = self._admission.refuse()
        request_id = _request_id(handler_call_details)
        service = self._service
        refusal_log = self._refusal_log
        on_shed = self._on_shed

        async def refuse(_request: bytes, context: grpc.aio.ServicerContext) -> None:
            metrics.observe_rpc(service, method, "RESOURCE_EXHAUSTED", 0.0)
            if on_shed is not None:
                on_shed(method, context.peer() or "", error.reason)
            refusal_log.note(
                service=service,
                rpc=method,
                request_id=request_id,
                code="RESOURCE_EXHAUSTED",
                reason=error.reason,
                error=error.message,
            )
            await grpc_errors.abort_with(context, error, ((REQUEST_ID_KEY, request_id),))

        # No deserializer: the request's bytes are never parsed.
        return grpc.unary_unary_rpc_method_handler(refuse)
