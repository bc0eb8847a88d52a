"""An append-only, hash-chained audit log.

Each event is one JSON line (one longer than 16 KiB, several: `in_parts`). It carries
`seq` (1, 2, 3, ...), `prev` (the `hash` of the event before; 64 zeros for the first) and
its own `hash`: the SHA-256 of the event's canonical JSON (sorted keys, no spaces)
without the `hash` field. Changing any field breaks that event's hash; removing or
reordering events breaks `seq` and `prev` of the one after. `verify` finds the first
such break and says where.

With a signing key (`checkpoints`), a sink also writes signed checkpoints into the chain
(lines with a `checkpoint` field instead of an event's) and to a second sink; `verify`
checks their hashes like any line's, `checkpoints.verify_anchored` their signatures.
`read_events` and `query` leave them out.

The file sink appends under an exclusive `flock` (several server processes may share
one file), reads the last event for `prev`/`seq` where another writer appended since
its own last write, writes, and fsyncs before it returns: the caller sends its
response only after that.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # checkpoints builds on this module
    from .checkpoints import Checkpointer

GENESIS = "0" * 64
#: The longest line an event is written as. Container runtimes cut longer log lines into
#: 16 KiB pieces, which a cluster's log pipeline may not join again: a longer event is
#: written as several, each with a share of its id lists (`in_parts`).
MAX_LINE_BYTES = 16 * 1024
#: What a line holds beside the event: seq, prev, hash, the stream mark, part and parts, with room to spare.
_CHAIN_BYTES = 320
#: The lists that grow with a call (ids named or returned, refused records); every other field is bounded.
_LISTED = ("person_ids", "record_ids", "refused_records")
#: A bound on those other fields together (case id and purpose are cut at 200 characters, ids at 128, ...).
_BOUNDED_FIELDS_BYTES = 4096
#: Read backwards in chunks this big to find the last line of the file.
_TAIL_CHUNK = 64 * 1024
#: A writer thread without events for this long ends (the next event starts another).
_WRITER_IDLE_S = 1.0


def canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: dict[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def chain(event: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """The event with its place in the chain: seq, prev and hash."""
    linked = {**event, "seq": seq, "prev": prev}
    linked["hash"] = event_hash(linked)
    return linked


def now_iso(at: float | None = None) -> str:
    """UTC in milliseconds: now, or `at` (seconds since the epoch)."""
    moment = datetime.datetime.now(datetime.UTC) if at is None else datetime.datetime.fromtimestamp(at, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_parts(event: dict[str, Any], max_line_bytes: int = MAX_LINE_BYTES) -> list[dict[str, Any]]:
    """The event, or where its line would pass `max_line_bytes`, the events that together make it.

    Each part repeats every field but the id lists, lists the next share of the ids in their
    order, and says `part` (1, 2, ...) of `parts`; a query for a person finds the part that
    lists them. An event that fits is returned as it is, without `part`.
    """
    lists = {name: event[name] for name in _LISTED if event.get(name)}
    # A bound first, without serialising (every audited call comes here): a character takes at
    # most 6 bytes of JSON (an escaped control character), and an item at most 48 more (quotes,
    # comma; a refused record's keys and index).
    rough = sum(6 * len(str(item)) + 48 for items in lists.values() for item in items)
    budget = max_line_bytes - _CHAIN_BYTES
    if rough + _BOUNDED_FIELDS_BYTES <= budget:
        return [event]
    if rough <= 8 * budget and len(canonical(event)) <= budget:  # near the bound: measured
        return [event]
    fixed = len(canonical({**event, **{name: [] for name in lists}}))
    parts: list[dict[str, list[Any]]] = []
    current: dict[str, list[Any]] = {name: [] for name in lists}
    size = fixed
    for name, items in lists.items():
        for item in items:
            cost = len(canonical(item)) + 1
            if size + cost > budget and any(current.values()):
                parts.append(current)
                current, size = {name: [] for name in lists}, fixed
            current[name].append(item)
            size += cost
    parts.append(current)
    return [{**event, **share, "part": number, "parts": len(parts)} for number, share in enumerate(parts, start=1)]


class Sink(Protocol):
    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Chains and writes one event durably; returns it as written."""

    def append_many(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chains and writes events in order, durable together; returns them as written."""


def _last_line(handle: IO[bytes]) -> bytes | None:
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    if end == 0:
        return None
    pos, tail = end, b""
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        handle.seek(pos)
        tail = handle.read(step) + tail
        stripped = tail.rstrip(b"\n")
        cut = stripped.rfind(b"\n")
        if cut >= 0:
            return stripped[cut + 1 :]
    return tail.rstrip(b"\n") or None


class FileSink:
    """Appends to one file: flock, find the chain's head, write, flush, fsync.

    The file stays open between writes, and the head (seq, hash) this sink wrote last is
    kept with the file's size after that write: under the lock, an unchanged size means no
    other writer appended since, so the last line need not be read again. Reading it cost
    each group commit an open, a 64 KiB read and a JSON parse. A file replaced under the
    same path (rotation) is noticed by its inode and opened afresh.
    """

    def __init__(self, path: Path, checkpointer: Checkpointer | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.checkpointer = checkpointer
        self._lock = threading.Lock()  # one handle, one writer at a time within the process
        self._handle: IO[bytes] | None = None
        self._head: tuple[int, int, str] | None = None  # (file size after our write, seq, hash)
        self._first: str | None = None  # the hash of the open file's first line (for checkpoints)

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One lock, one write and one fsync for all of `events` (the trail's group commit).

        With a checkpointer, a checkpoint that is due goes in the same write, after the events.
        """
        return self._append(events, checkpoint=False)

    def checkpoint(self) -> bool:
        """Writes a checkpoint of the file's head now where this sink wrote events since its last; says whether."""
        if self.checkpointer is None or not self.checkpointer.uncovered:
            return False
        self._append((), checkpoint=True)
        return True

    def checkpoint_wait(self) -> float | None:
        return None if self.checkpointer is None else self.checkpointer.wait()

    def _append(self, events: Sequence[dict[str, Any]], *, checkpoint: bool) -> list[dict[str, Any]]:
        statement = None
        with self._lock:
            handle = self._open()
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                size = os.fstat(handle.fileno()).st_size
                if self._head is not None and self._head[0] == size:
                    seq, prev = self._head[1] + 1, self._head[2]
                else:  # first write, or another writer appended since ours
                    last = _last_line(handle)
                    if last is None:
                        seq, prev = 1, GENESIS
                    else:
                        before = json.loads(last)
                        seq, prev = int(before["seq"]) + 1, str(before["hash"])
                written = []
                for offset, event in enumerate(events):
                    linked = chain(event, seq + offset, prev)
                    prev = linked["hash"]
                    written.append(linked)
                lines = list(written)
                if self.checkpointer is not None:
                    self.checkpointer.count(len(written))
                    if checkpoint and seq == 1 and not written:
                        self.checkpointer.nothing_to_cover()
                    elif (checkpoint or self.checkpointer.due()) and (seq > 1 or written):
                        if seq == 1:
                            self._first = written[0]["hash"]
                        marker = self.checkpointer.line(
                            first=self._first_hash(handle), seq=seq + len(written) - 1, head=prev
                        )
                        lines.append(chain(marker, seq + len(written), prev))
                        statement, prev = marker["checkpoint"], lines[-1]["hash"]
                data = b"".join(canonical(linked) + b"\n" for linked in lines)
                if data:
                    handle.seek(0, os.SEEK_END)
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                    self._head = (size + len(data), lines[-1]["seq"], prev)
            except BaseException:
                self._head = None  # what reached the file is unknown: read it next time
                if self.checkpointer is not None and statement is not None:
                    self.checkpointer.failed()
                raise
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        if statement is not None:
            self.checkpointer.written(statement)  # the second sink, outside the log's lock
        return written

    def _first_hash(self, handle: IO[bytes]) -> str:
        """The hash of the file's first line (kept while the file stays the same)."""
        if self._first is None:
            handle.seek(0)
            self._first = str(json.loads(handle.readline())["hash"])
        return self._first

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle, self._head, self._first = None, None, None

    def __del__(self) -> None:  # a sink dropped without close() (tests, a trail rebuilt) frees its file
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.close()

    def _open(self) -> IO[bytes]:
        """The open file, opened (again) where it is not open yet or the path now names another file."""
        if self._handle is not None:
            try:
                same = os.stat(self.path).st_ino == os.fstat(self._handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return self._handle
            self._handle.close()
            self._handle, self._head, self._first = None, None, None
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._handle = os.fdopen(fd, "r+b")
        if created:
            # The new file's directory entry must survive a crash too.
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return self._handle


class StreamSink:
    """JSON lines on a stream (stdout) for a cluster's log pipeline; one chain per process."""

    def __init__(self, stream: IO[str] | None = None, checkpointer: Checkpointer | None = None):
        self._stream = stream
        self.checkpointer = checkpointer
        self._lock = threading.Lock()
        self._seq = 0
        self._prev = GENESIS
        self._first = GENESIS

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._append(events, checkpoint=False)

    def checkpoint(self) -> bool:
        if self.checkpointer is None or not self.checkpointer.uncovered:
            return False
        self._append((), checkpoint=True)
        return True

    def checkpoint_wait(self) -> float | None:
        return None if self.checkpointer is None else self.checkpointer.wait()

    def _append(self, events: Sequence[dict[str, Any]], *, checkpoint: bool) -> list[dict[str, Any]]:
        statement = None
        with self._lock:
            written = []
            for event in events:
                self._seq += 1
                linked = chain({**event, "stream": "audit"}, self._seq, self._prev)
                self._prev = linked["hash"]
                if self._seq == 1:
                    self._first = linked["hash"]
                written.append(linked)
            lines = list(written)
            if self.checkpointer is not None:
                self.checkpointer.count(len(written))
                if (checkpoint or self.checkpointer.due()) and self._seq:
                    marker = self.checkpointer.line(first=self._first, seq=self._seq, head=self._prev)
                    self._seq += 1
                    lines.append(chain({**marker, "stream": "audit"}, self._seq, self._prev))
                    self._prev, statement = lines[-1]["hash"], marker["checkpoint"]
            stream = self._stream or sys.stdout
            stream.write("".join(canonical(linked).decode() + "\n" for linked in lines))
            stream.flush()
        if statement is not None:
            self.checkpointer.written(statement)
        return written


class AuditTrail:
    """Writes events to every configured sink on a writer thread of its own, in group commits.

    `record` returns once its event is durable (the caller answers only then). Events
    recorded while a write is under way wait for the next one and go together: one lock,
    one write and one fsync per group instead of per event. With an fsync per event the
    trail capped every audited call at one per fsync, whatever the cores: an indexer that
    audits each Search answered 4 concurrent callers at 10.5 Searches/s where Milvus took
    29.8 (docs/benchmarks.md, "Costs behind the defaults"). The chain is unchanged: events are chained in the order
    they were recorded.

    The writer is one thread, not a task per group on asyncio's default executor: a group
    is handed over on a queue, and the writer starts the next group itself and wakes the
    callers' loop once. Through `asyncio.to_thread` each group cost the event loop an
    executor submission, two wrapped futures and a task's wake-up; an indexer auditing
    every Search spent about 0.1 ms of CPU less per Search this way (docs/benchmarks.md,
    "Costs behind the defaults"). The thread ends after a second without events and starts again with the next.
    """

    def __init__(self, sinks: Sequence[Sink]):
        self._sinks = list(sinks)
        self._lock = threading.Lock()
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writing = False  # a group is queued or being written: new events wait for the next
        self._groups: queue.SimpleQueue[list[tuple[dict[str, Any], asyncio.Future[None]]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if any(getattr(sink, "checkpointer", None) is not None for sink in self._sinks):
            # Events a checkpoint has not covered yet get one when the process exits normally.
            atexit.register(_checkpoint_at_exit, weakref.ref(self))

    def checkpoint(self) -> None:
        """Writes a checkpoint now on every sink with events that none covers yet."""
        for sink in self._sinks:
            if getattr(sink, "checkpointer", None) is not None:
                sink.checkpoint()

    async def record(self, event: dict[str, Any]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting.append((event, done))
            if not self._writing:
                self._hand_over_waiting()
        await done

    def _hand_over_waiting(self) -> None:
        """Queues the waiting events as the next group (the lock is held)."""
        group, self._waiting = self._waiting, []
        self._writing = True
        self._groups.put(group)
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_groups, name="audit-writer", daemon=True)
            self._thread.start()

    def _checkpoint_wait(self) -> float | None:
        """Seconds until a sink's timed checkpoint is due; None where no sink waits for one."""
        waits = [w for sink in self._sinks if (w := _wait_of(sink)) is not None]
        return min(waits) if waits else None

    def _write_groups(self) -> None:
        while True:
            wait = self._checkpoint_wait()
            try:
                group = self._groups.get(timeout=_WRITER_IDLE_S if wait is None else min(wait, _WRITER_IDLE_S))
            except queue.Empty:
                if wait is not None:  # the writer stays while events wait for their checkpoint
                    if self._checkpoint_wait() == 0.0:
                        self._timed_checkpoints()
                    continue
                with self._lock:
                    if self._groups.empty():  # nothing was queued meanwhile: the next event starts a writer
                        self._thread = None
                        return
                continue
            failure: Exception | None = None
            try:
                # A long event's parts are written together, next to each other (on this thread:
                # a million-row enrolment's event takes seconds to cut).
                self._write([part for event, _ in group for part in in_parts(event)])
            except Exception as exc:  # noqa: BLE001 - each caller of the group gets the failure
                failure = exc
            with self._lock:
                if self._waiting:
                    self._hand_over_waiting()
                else:
                    self._writing = False
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, done in group:
                by_loop.setdefault(done.get_loop(), []).append(done)
            for loop, futures in by_loop.items():
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits these any more
                    loop.call_soon_threadsafe(_settle, futures, failure)

    def _write(self, events: list[dict[str, Any]]) -> None:
        for sink in self._sinks:
            sink.append_many(events)

    def _timed_checkpoints(self) -> None:
        for sink in self._sinks:
            if _wait_of(sink) == 0.0:
                try:
                    sink.checkpoint()
                except Exception as exc:  # noqa: BLE001 - tried again later; the events are written
                    sink.checkpointer.failed()
                    _log_error("audit checkpoint not written: %s", exc)


def _wait_of(sink: Sink) -> float | None:
    wait = getattr(sink, "checkpoint_wait", None)
    return wait() if wait is not None else None


def _log_error(message: str, *args: Any) -> None:
    import logging

    logging.getLogger(__name__).error(message, *args)


def _checkpoint_at_exit(ref: weakref.ref[AuditTrail]) -> None:
    audit = ref()
    if audit is not None:
        with contextlib.suppress(Exception):
            audit.checkpoint()


def _settle(futures: list[asyncio.Future[None]], failure: Exception | None) -> None:
    for done in futures:
        if done.done():  # its caller went away; the event was written all the same
            continue
        if failure is None:
            done.set_result(None)
        else:
            done.set_exception(failure)


# Verification and queries ---------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    head: str
    problem: str | None = None
    line: int | None = None
    #: checkpoint lines among the chain's (their hashes checked here, their signatures only with the key)
    checkpoints: int = 0


#: Told each line whose hash, seq and prev are right: (line number, line, its seq, the hash before it);
#: returns a problem to stop verification at that line, or None.
Inspect = Callable[[int, dict[str, Any], int, str], str | None]


def verify(path: Path, *, expect_head: str | None = None, inspect: Inspect | None = None) -> VerifyResult:
    """Checks every event's hash, seq and prev; stops at the first break and says where.

    `events` counts the events, not the checkpoint lines among them (`checkpoints`).
    """
    prev, seq, count, marks = GENESIS, 0, 0, 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\n")
            try:
                event = json.loads(line)
                stated_hash, stated_seq, stated_prev = event["hash"], event["seq"], event["prev"]
            except (ValueError, KeyError, TypeError):
                return VerifyResult(
                    False, count, prev, "not an audit event (unreadable JSON or missing seq/prev/hash)", number
                )
            if stated_seq != seq + 1:
                what = "removed" if isinstance(stated_seq, int) and stated_seq > seq + 1 else "reordered or duplicated"
                return VerifyResult(
                    False, count, prev, f"seq {stated_seq} follows seq {seq}: events were {what}", number
                )
            if stated_prev != prev:
                return VerifyResult(
                    False,
                    count,
                    prev,
                    "prev does not match the hash of the event before: an event was removed, inserted or reordered",
                    number,
                )
            if event_hash(event) != stated_hash:
                return VerifyResult(
                    False, count, prev, "the event's content does not match its hash: it was changed", number, marks
                )
            if inspect is not None:
                problem = inspect(number, event, stated_seq, prev)
                if problem is not None:
                    return VerifyResult(False, count, prev, problem, number, marks)
            is_mark = "checkpoint" in event
            prev, seq, count, marks = stated_hash, stated_seq, count + (not is_mark), marks + is_mark
    if expect_head is not None and expect_head != prev:
        return VerifyResult(
            False,
            count,
            prev,
            f"the last event's hash is {prev}, not the expected {expect_head}: events at the end were "
            "removed (or added)",
            None,
            marks,
        )
    return VerifyResult(True, count, prev, checkpoints=marks)


def read_events(path: Path, *, checkpoints: bool = False) -> Iterator[dict[str, Any]]:
    """The events of an audit file, in order; checkpoint lines only when asked for."""
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                event = json.loads(raw)
                if checkpoints or "checkpoint" not in event:
                    yield event


def _time(text: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def query(
    events: Iterable[dict[str, Any]],
    *,
    caller: str | None = None,
    case_id: str | None = None,
    person_id: str | None = None,
    rpc: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Events matching every filter given (caller, case id, a person id among the ids, rpc, time range)."""
    start = _time(since) if since else None
    end = _time(until) if until else None
    for event in events:
        if "checkpoint" in event:  # a signed checkpoint, not a call
            continue
        if caller and event.get("caller") != caller and event.get("via") != caller:
            continue
        if case_id and event.get("case_id") != case_id:
            continue
        if person_id and person_id not in (event.get("person_ids") or ()):
            continue
        if rpc and not str(event.get("rpc", "")).endswith(rpc):
            continue
        if start or end:
            at = _time(event["time"])
            if (start and at < start) or (end and at > end):
                continue
        yield event
