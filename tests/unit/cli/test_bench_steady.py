"""`kinship bench index` measures search only once its latency has stopped changing."""

from __future__ import annotations

import time

import numpy as np

from kinship.cli.bench_index import wait_for_steady_search


def _call_taking(latencies_ms):
    """A search whose n-th call takes latencies_ms[n] (the last value from then on)."""
    calls = []

    def call(_query):
        taken = latencies_ms[min(len(calls), len(latencies_ms) - 1)]
        calls.append(taken)
        time.sleep(taken / 1000)

    return call, calls


def test_waits_while_latency_falls_then_returns_once_steady():
    # Windows of 3: 12 ms, then 6 ms, then 2 ms for good (a query node swapping indexed segments in).
    call, calls = _call_taking([12] * 3 + [6] * 3 + [2])
    waited = wait_for_steady_search(call, np.zeros((4, 2)), timeout=10, window=3)
    assert waited is not None
    # Steady means three windows alike after the fall: at least 3 windows of 2 ms after the 6 ms one.
    assert len(calls) >= 15 and calls[-9:] == [2] * 9


def test_gives_up_after_the_timeout_when_latency_keeps_changing():
    call, _ = _call_taking([1, 1, 8, 8] * 1000)  # windows of 1 ms and of 8 ms by turns never agree
    started = time.perf_counter()
    assert wait_for_steady_search(call, np.zeros((4, 2)), timeout=0.3, window=2) is None
    assert time.perf_counter() - started < 2
