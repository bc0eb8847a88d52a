"""clients.call sends a call its dependency refused at admission again, after the hint, within the deadline."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_status import rpc_status

from kinship.runtime import clients, errors, grpc_errors
from kinship.runtime.admission import Overloaded
from kinship.runtime.deadlines import CALL_DEADLINE


def _rpc_error(error: errors.KinshipError) -> grpc.aio.AioRpcError:
    """The error a real grpc.aio client raises for a server's `abort_with(error)`."""
    status = rpc_status.to_status(grpc_errors.to_rpc_status(error))
    return grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), details=status.details
    )


class Dependency:
    """A stub method that answers with the scripted errors first, then OK; records each call's timeout."""

    def __init__(self, *refusals: errors.KinshipError):
        self.refusals = list(refusals)
        self.timeouts: list[float] = []

    async def __call__(self, request, *, timeout, metadata):
        self.timeouts.append(timeout)
        if self.refusals:
            raise _rpc_error(self.refusals.pop(0))
        return f"answer to {request}"


def _run(coro):
    return asyncio.run(coro)


def test_an_admission_refusal_is_sent_again_after_the_hint_and_succeeds() -> None:
    dependency = Dependency(Overloaded("full", retry_after_ms=10), Overloaded("full", retry_after_ms=10))
    started = time.monotonic()
    assert _run(clients.call(dependency, "q", service="embedder", timeout=5.0)) == "answer to q"
    assert len(dependency.timeouts) == 3
    assert time.monotonic() - started >= 2 * 0.005  # waited at least half the hint, twice
    assert dependency.timeouts[2] < dependency.timeouts[0] <= 5.0  # one budget for all attempts


def test_past_the_retries_the_refusal_reaches_the_caller_with_its_hint() -> None:
    dependency = Dependency(*[Overloaded("full", retry_after_ms=5) for _ in range(5)])
    with pytest.raises(errors.ResourceExhausted) as caught:
        _run(clients.call(dependency, "q", service="embedder", timeout=5.0))
    assert caught.value.reason == "OVERLOADED" and caught.value.retry_after_ms == 5
    assert "embedder is at capacity" in caught.value.message
    assert len(dependency.timeouts) == 1 + clients.OVERLOAD_RETRIES


def test_no_retry_when_the_hint_does_not_fit_in_the_callers_deadline() -> None:
    async def scenario():
        CALL_DEADLINE.set(time.monotonic() + 0.5)  # the caller waits half a second
        # Jittered 0.5-1.5x, the 600 ms hint is a wait of at least 300 ms: twice that never fits in 500.
        dependency = Dependency(Overloaded("full", retry_after_ms=600))
        with pytest.raises(errors.ResourceExhausted):
            await clients.call(dependency, "q", service="embedder", timeout=30.0)
        return dependency

    dependency = _run(scenario())
    assert len(dependency.timeouts) == 1 and dependency.timeouts[0] <= 0.5


def test_other_refusals_are_never_sent_again() -> None:
    rate_limited = errors.ResourceExhausted(
        "over your rate", reason="RATE_LIMITED", metadata={"retry_after_seconds": "0.01"}
    )
    for refusal in (rate_limited, errors.ResourceExhausted("image too big"), errors.Unavailable("down")):
        dependency = Dependency(refusal)
        with pytest.raises(errors.KinshipError):
            _run(clients.call(dependency, "q", service="embedder", timeout=5.0))
        assert len(dependency.timeouts) == 1, refusal
