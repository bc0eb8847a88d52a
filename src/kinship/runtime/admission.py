"""Admission control: a bounded number of calls at work per service, and a quick no past it.

A service past its capacity must say so at once rather than queue without bound until
every caller times out. Each server admits at most `max_concurrent_calls` calls of its
own service at a time (health and reflection are never counted or refused); the next
one is answered RESOURCE_EXHAUSTED at once, with a retry hint both as a
`google.rpc.RetryInfo` detail and as `grpc-retry-pushback-ms` trailing metadata (what
gRPC's own retry policy reads). The hint is the recent average time of an admitted call:
about when a slot frees.

A call whose deadline has already passed when it reaches the service is dropped before
any work (DEADLINE_EXCEEDED): its caller has gone, and doing it would only delay the
calls that can still be answered.

The interceptor sits inside `CallContextInterceptor` and the security interceptors, so
only callers let in take a slot. While every slot is taken, though, a new call of a unary
method is refused before any of them runs (`interceptors.RuntimeInterceptor`): its bytes
are not parsed, no gate runs, the refusal is counted in the metrics, and logged at most
once a second, so that refusing the excess costs the service little of the CPU its
admitted calls need.
"""

from __future__ import annotations

import inspect
import time

import grpc

from . import errors

#: Never counted, never refused: a probe must always get its answer.
EXEMPT_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
#: Default bound for services that state none (the embedder states 2 x its workers).
DEFAULT_MAX_CONCURRENT_CALLS = 64
#: Headroom of grpc's own hard limit (maximum_concurrent_rpcs) over the admission bound: health,
#: reflection and the refusals themselves, which last a fraction of a millisecond.
HARD_LIMIT_HEADROOM = 64


class Overloaded(errors.ResourceExhausted):
    """The service has as many calls at work as it admits; retry after `retry_after_ms`."""

    default_reason = "OVERLOADED"

    def __init__(self, message: str, *, retry_after_ms: int):
        super().__init__(message, metadata={"retry_after_ms": str(retry_after_ms)})
        self.retry_after_ms = retry_after_ms


class Admission:
    """Counts the calls at work and decides on each new one. One per server; used from its event loop only."""

    def __init__(self, service: str, max_concurrent_calls: int, *, min_retry_ms: int = 10, max_retry_ms: int = 5000):
        if max_concurrent_calls < 1:
            raise ValueError("max_concurrent_calls must be at least 1")
        self.service = service
        self.limit = max_concurrent_calls
        self.in_flight = 0
        self.admitted = 0
        self.refused = 0
        self.expired = 0
        self._average_ms = 0.0
        self._min_retry_ms = min_retry_ms
        self._max_retry_ms = max_retry_ms

    @property
    def retry_after_ms(self) -> int:
        return int(min(max(self._average_ms, self._min_retry_ms), self._max_retry_ms))

    def enter(self, time_remaining: float | None) -> None:
        """Admits a call or raises: DeadlineExceeded when its deadline passed, Overloaded when full."""
        if time_remaining is not None and time_remaining <= 0:
            self.expired += 1
            raise errors.DeadlineExceeded(
                f"the call's deadline had passed when it reached the {self.service}; it was dropped before any work",
                reason="DEADLINE_PASSED_BEFORE_WORK",
            )
        if self.in_flight >= self.limit:
            raise self.refuse()
        self.in_flight += 1
        self.admitted += 1

    @property
    def full(self) -> bool:
        return self.in_flight >= self.limit

    def refuse(self) -> Overloaded:
        """Counts a refusal and returns the error that answers it (with the current retry hint)."""
        self.refused += 1
        retry = self.retry_after_ms
        return Overloaded(
            f"the {self.service} is at capacity ({self.limit} calls at work); retry after about {retry} ms "
            "or send to another replica",
            retry_after_ms=retry,
        )

    def leave(self, seconds: float) -> None:
        self.in_flight -= 1
        # Exponentially weighted mean of admitted call durations (about the last 20 calls).
        self._average_ms += (seconds * 1000 - self._average_ms) * 0.05


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Applies `Admission` to every unary call of the service (not health, not reflection)."""

    def __init__(self, admission: Admission):
        self.admission = admission

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        if handler_call_details.method.startswith(EXEMPT_PREFIXES):
            return handler
        inner = handler.unary_unary
        admission = self.admission

        async def admitted(request, context: grpc.aio.ServicerContext):
            admission.enter(context.time_remaining())
            started = time.perf_counter()
            try:
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result
            finally:
                admission.leave(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            admitted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
