"""The call's deadline, carried to the code that calls other systems (Milvus, other services).

There is one `CALL_DEADLINE` for the whole suite. The runtime's interceptor binds it from
the caller's deadline, and the security interceptor narrows it to the deployment's
maximum (`--max-deadline-seconds`); both keep the answer margin back (`work_deadline`).
Everything that calls out reads it: `clients.call` (the ranker's calls to the embedder
and indexer) and the indexer's Milvus adapter (`remaining()`), so that the caller's
deadline, not a fixed timeout, bounds the work done for it. Context variables follow
the call into worker threads when the work is run with `contextvars.copy_context().run`.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

#: Absolute `time.monotonic()` by which the work for the current call must be done (the caller's
#: deadline, capped by the deployment, less the answer margin); None: no deadline.
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


def work_deadline(time_remaining: float | None) -> float | None:
    """The value to bind for a call with `time_remaining()` seconds (None: no deadline of its own):
    now plus `for_work(time_remaining)`, never later than the deadline already bound, so a cap
    set by an inner interceptor only ever shortens the caller's."""
    current = CALL_DEADLINE.get()
    if time_remaining is None:
        return current
    own = time.monotonic() + for_work(time_remaining)
    return own if current is None else min(current, own)


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
