"""Micro-batching: faces of concurrent requests meet in one recognizer run.

Request threads hand their aligned faces to `MicroBatcher.embed_batch` and wait. Each
runner thread takes the oldest waiting job, then gathers more jobs until it holds
`max_batch` faces or `max_wait` seconds have passed since it took the first, runs the
recognizer once on all of them and hands each job its rows. A lone request therefore
waits at most `max_wait` longer than without batching, and nothing waits at all when
`max_wait` is 0 (the runners then batch only what is already queued).

With several runners, a runner that starts while others are idle takes only its share
of the queue (and does not wait for more), so the queue spreads over the runners instead
of one runner taking it all while the others, and their cores, stand idle.

On a CPU a batch costs about as much per face as single faces, so there the default
is one single-thread runner per core with a short wait; on a GPU a batch is far
cheaper per face, and one runner with a longer wait and larger batches pays.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from kinship.embedder.domain.pipeline import FaceRecognizer


@dataclass
class _Job:
    faces: list[np.ndarray]
    future: Future = field(default_factory=Future)


_STOP = object()


class MicroBatcher:
    """A FaceRecognizer that gathers the faces of concurrent callers into bounded batches."""

    def __init__(
        self,
        recognizer: FaceRecognizer,
        *,
        max_batch: int = 32,
        max_wait: float = 0.002,
        runners: int = 1,
        thread_init: Callable[[], object] | None = None,
    ):
        if max_batch < 1 or max_wait < 0 or runners < 1:
            raise ValueError("max_batch and runners must be at least 1 and max_wait at least 0")
        self._recognizer = recognizer
        self.dimension = recognizer.dimension
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._idle = 0  # runners waiting for a job
        self._idle_lock = threading.Lock()
        self.batches = 0  # runs made, for tests and metrics
        self.largest_batch = 0
        self._thread_init = thread_init  # run first on each runner thread (the composition root lowers its priority)
        self._threads = [
            threading.Thread(target=self._run, name=f"embedder-batch-{i}", daemon=True) for i in range(runners)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def recognizer(self) -> FaceRecognizer:
        return self._recognizer

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        return self.embed_batch([aligned_bgr])[0]

    def embed_batch(self, faces_bgr: Sequence[np.ndarray]) -> np.ndarray:
        if not faces_bgr:
            return np.zeros((0, self.dimension), np.float32)
        if self._closed:
            raise RuntimeError("the embedder is shutting down")
        job = _Job(list(faces_bgr))
        self._queue.put(job)
        return job.future.result()

    def close(self) -> None:
        """Stops the runners after the jobs already queued."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=10)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, count = [first], len(first.faces)
        max_jobs = math.inf
        wait = self.max_wait
        with self._idle_lock:
            idle = self._idle
        if idle:
            # Others are free: take a fair share of what is queued now, and start at once.
            max_jobs = math.ceil((self._queue.qsize() + 1) / (idle + 1))
            wait = 0.0
        deadline = time.monotonic() + wait
        while count < self.max_batch and len(jobs) < max_jobs:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
            count += len(job.faces)
        return jobs, False

    def _run(self) -> None:
        if self._thread_init is not None:
            self._thread_init()
        while True:
            with self._idle_lock:
                self._idle += 1
            first = self._queue.get()
            with self._idle_lock:
                self._idle -= 1
            if first is _STOP:
                return
            jobs, stop = self._gather(first)
            faces = [face for job in jobs for face in job.faces]
            try:
                rows = np.asarray(self._recognizer.embed_batch(faces), dtype=np.float32)
                if rows.ndim != 2 or rows.shape[0] != len(faces):
                    raise ValueError(f"the recognizer returned {rows.shape} for {len(faces)} faces")
            except BaseException as exc:  # noqa: BLE001 - every waiting caller must get the failure
                for job in jobs:
                    job.future.set_exception(exc)
            else:
                self.batches += 1
                self.largest_batch = max(self.largest_batch, len(faces))
                start = 0
                for job in jobs:
                    job.future.set_result(rows[start : start + len(job.faces)])
                    start += len(job.faces)
            if stop:
                return
