"""Two writes of one record in one indexer process never interleave (Milvus 2.3's read-delete-insert)."""

from __future__ import annotations

import threading
import time

import pytest

from kinship.indexer.adapters.milvus_gallery import KeysBeingWritten
from kinship.runtime import deadlines
from kinship.runtime.errors import DeadlineExceeded


def test_a_write_naming_a_record_being_written_waits_until_that_write_ends():
    writing = KeysBeingWritten()
    events: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with writing.holding(["a", "b"], "write"):
            first_in.set()
            time.sleep(0.2)
            events.append("first done")

    def second() -> None:
        first_in.wait()
        with writing.holding(["b", "c"], "write"):
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert events == ["first done", "second in"]


def test_writes_of_different_records_do_not_wait_on_each_other():
    writing = KeysBeingWritten()
    with writing.holding(["a"], "write"):
        started = time.monotonic()
        with writing.holding(["b"], "write"):
            pass
        assert time.monotonic() - started < 0.1


def test_a_write_that_cannot_wait_longer_is_deadline_exceeded_and_holds_nothing():
    writing = KeysBeingWritten()
    with writing.holding(["a"], "write into g"):
        with deadlines.deadline_scope(0.05), pytest.raises(DeadlineExceeded, match="same records"):
            with writing.holding(["x", "a"], "write into g"):
                pass
    # Neither the refused write's keys nor the first's are held any more.
    with deadlines.deadline_scope(0.05), writing.holding(["x", "a"], "write into g"):
        pass


def test_a_write_that_fails_lets_the_next_one_in():
    writing = KeysBeingWritten()
    with pytest.raises(RuntimeError), writing.holding(["a"], "write"):
        raise RuntimeError("milvus went away")
    with deadlines.deadline_scope(0.05), writing.holding(["a"], "write"):
        pass
