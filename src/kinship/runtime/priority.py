"""Thread priorities: background work runs below the event loop that answers calls.

A served process answers calls on one asyncio event loop and does its heavy work on other
threads (the embedder's worker pool, its micro-batch runners and onnxruntime's own pools).
When that work fills every core, the loop waits for a core like any other thread, and a
call that needs only a few hundred microseconds of the loop (a refusal at admission, a health
check) waits tens of milliseconds. Linux gives each thread its own nice value, inherited by
the threads it creates, and any thread may lower its own priority without privileges: so the
workers run at a higher nice value than the loop, and the scheduler runs the loop first
whenever it is ready. Throughput is unchanged where the loop is idle most of the time: the
workers still share every core among themselves.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def lower_this_thread(nice: int) -> bool:
    """Raises the calling thread's nice value by `nice` (0 does nothing); False where the OS has no per-thread nice.

    Linux only: there setpriority(PRIO_PROCESS, tid) applies to one thread, and threads
    created afterwards by this thread inherit the value. Elsewhere it would renice the
    whole process, loop included, so it does nothing.
    """
    if nice < 0:
        raise ValueError("a thread can only lower its own priority (a nice increment of 0 or more)")
    tid = threading.get_native_id()
    if nice == 0 or not hasattr(os, "setpriority") or not os.path.isdir(f"/proc/self/task/{tid}"):
        return False
    current = os.getpriority(os.PRIO_PROCESS, tid)
    os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    return True


def thread_nice(tid: int | None = None) -> int:
    """The nice value of a thread of this process (the calling thread by default)."""
    return os.getpriority(os.PRIO_PROCESS, tid if tid is not None else threading.get_native_id())


def call_in_lowered_thread(nice: int, function: Callable[..., T], *args, **kwargs) -> T:
    """Runs `function` on a new thread lowered by `nice`, and returns its result (or raises its error).

    For work that creates threads of its own, such as an onnxruntime session whose intra-op
    pool is made when the session is: the pool's threads inherit the lowered priority.
    """
    with ThreadPoolExecutor(
        1, thread_name_prefix="lowered-loader", initializer=lower_this_thread, initargs=(nice,)
    ) as one:
        return one.submit(function, *args, **kwargs).result()
