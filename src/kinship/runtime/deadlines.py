"""The caller's deadline, carried to the code that calls other systems (Milvus, other services).

The gRPC transport sets `CALL_DEADLINE` from `context.time_remaining()`; adapters ask
`remaining()` for the time they may spend, so that a caller's deadline, not a fixed
timeout, bounds the work done for it. Context variables follow the call into worker
threads when the work is run with `contextvars.copy_context().run`.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

#: Absolute `time.monotonic()` by which the current call must be answered; None: no deadline.
CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("kinship_call_deadline", default=None)


#: Part of a caller's deadline kept back for the answer's way home (the service's own interceptors,
#: the network): at most this many seconds, and at most `ANSWER_MARGIN_FRACTION` of the deadline.
#: Without it, work given the whole deadline ends just as the caller gives up, and the caller sees
#: DEADLINE_EXCEEDED instead of the error the work found (e.g. UNAVAILABLE naming the Milvus URI).
ANSWER_MARGIN_S = 0.25
ANSWER_MARGIN_FRACTION = 0.1


def for_work(time_remaining: float | None) -> float | None:
    """The seconds that work done for a call may take, from the call's `time_remaining()`:
    the caller's time less the answer margin (None: no deadline)."""
    if time_remaining is None:
        return None
    return time_remaining - min(ANSWER_MARGIN_S, ANSWER_MARGIN_FRACTION * max(time_remaining, 0.0))


def remaining(cap: float) -> float:
    """Seconds left before the caller's deadline, at most `cap` (the whole `cap` without a deadline)."""
    deadline = CALL_DEADLINE.get()
    if deadline is None:
        return cap
    return min(cap, deadline - time.monotonic())


@contextlib.contextmanager
def deadline_scope(seconds: float | None) -> Iterator[None]:
    """Runs the block under a deadline `seconds` from now (None: no deadline)."""
    token = CALL_DEADLINE.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        CALL_DEADLINE.reset(token)
