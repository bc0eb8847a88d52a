"""Thread priorities: lowered worker threads, the loop's thread untouched, and inheritance by threads they create."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from kinship.runtime.priority import call_in_lowered_thread, lower_this_thread, thread_nice

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def test_a_lowered_pool_runs_below_the_thread_that_made_it():
    before = thread_nice()
    with ThreadPoolExecutor(max_workers=2, initializer=lower_this_thread, initargs=(5,)) as pool:
        inside = set(pool.map(lambda _: thread_nice(), range(8)))
    assert inside == {min(19, before + 5)}
    assert thread_nice() == before  # the caller (the event loop's thread in a service) keeps its priority


def test_threads_made_by_a_lowered_call_inherit_its_priority():
    # onnxruntime makes its pool threads when a session is created: they must be lowered too.
    before = thread_nice()
    seen: list[int] = []

    def make_a_session_like_pool() -> str:
        child = threading.Thread(target=lambda: seen.append(thread_nice()))
        child.start()
        child.join()
        return "made"

    assert call_in_lowered_thread(3, make_a_session_like_pool) == "made"
    assert seen == [min(19, before + 3)]
    assert thread_nice() == before


def test_an_error_in_the_lowered_call_reaches_the_caller():
    def fails() -> None:
        raise FileNotFoundError("model.onnx")

    with pytest.raises(FileNotFoundError, match="model.onnx"):
        call_in_lowered_thread(2, fails)


def test_zero_changes_nothing_and_raising_a_priority_is_refused():
    before = thread_nice()
    assert call_in_lowered_thread(0, lower_this_thread, 0) is False
    assert call_in_lowered_thread(0, thread_nice) == before
    with pytest.raises(ValueError, match="lower its own priority"):
        lower_this_thread(-1)
