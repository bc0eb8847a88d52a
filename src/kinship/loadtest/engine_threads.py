"""The same load on grpc's synchronous client and threads (`--engine threads`).

Measured on the 2-core machine (docs/benchmarks.md, "Costs behind the defaults"): grpc.aio's client spends about
650 us of CPU per unary call, the synchronous client with threads 200-300 us, because
its blocking call waits in C with the GIL released. Where the generator shares the
machine with the server, that CPU is taken from the server, so the cheaper client
measures more of the server. Same semantics as `engine.LoadRun`:

- closed loop: `--concurrency` threads, each making blocking calls one after another;
- open loop: one scheduler thread issues each call (`future()`) at its due time and
  its latency counts from that due time; `--concurrency` caps the calls in flight.
"""

from __future__ import annotations

import itertools
import random
import sys
import threading
import time
from collections.abc import Sequence

import grpc

from .engine import CallPlan, RunOptions, RunResult, _error_text
from .recorder import Recorder

_IDENTITY = lambda payload: payload  # noqa: E731 - requests are already bytes


class _SyncTimingInterceptor(grpc.UnaryUnaryClientInterceptor):
    """`--record` for the threads engine: its own clock and list, as engine.TimingInterceptor."""

    def __init__(self) -> None:
        self.samples: list[tuple[int, int, str]] = []
        self._lock = threading.Lock()

    def intercept_unary_unary(self, continuation, client_call_details, request):
        started = time.monotonic_ns()
        outcome = continuation(client_call_details, request)

        def done(call) -> None:
            code = call.code()
            with self._lock:
                self.samples.append((started, time.monotonic_ns(), "OK" if code is grpc.StatusCode.OK else code.name))

        outcome.add_done_callback(done)
        return outcome


class ThreadedLoadRun:
    def __init__(self, plans: Sequence[CallPlan], options: RunOptions, recorder: Recorder | None = None):
        if not plans:
            raise ValueError("no call to make")
        self.plans = list(plans)
        self.options = options
        self.recorder = recorder or Recorder(options.window_s)
        self._lock = threading.Lock()
        self._rng = random.Random(options.seed)
        self._weights = [p.weight for p in self.plans]
        self._requests = [itertools.cycle(p.requests) for p in self.plans]
        self._timing = _SyncTimingInterceptor() if options.record_timings else None
        self._stubs = self._open()
        self.in_flight = 0
        self._measure_from = 0.0
        self._stop_at = float("inf")
        self._stopping = threading.Event()
        self._measured_sent = 0

    def _open(self) -> list[itertools.cycle]:
        limit = int(self.options.max_message_mb * 1024 * 1024)
        base = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.use_local_subchannel_pool", 1),
        ]
        tls = self.options.tls
        self._channels: dict[str, list[grpc.Channel]] = {}
        stubs = []
        for plan in self.plans:
            if plan.target not in self._channels:
                opened = []
                for _ in range(max(1, self.options.connections)):
                    if tls.enabled:
                        creds = grpc.ssl_channel_credentials(tls.cacert, tls.key, tls.cert)
                        extra = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
                        channel = grpc.secure_channel(plan.target, creds, options=base + extra)
                    else:
                        channel = grpc.insecure_channel(plan.target, options=base)
                    if self._timing is not None:
                        channel = grpc.intercept_channel(channel, self._timing)
                    opened.append(channel)
                self._channels[plan.target] = opened
            stubs.append(
                itertools.cycle(
                    [
                        c.unary_unary(plan.path, request_serializer=_IDENTITY, response_deserializer=_IDENTITY)
                        for c in self._channels[plan.target]
                    ]
                )
            )
        return stubs

    def _pick(self) -> int:
        if len(self.plans) == 1:
            return 0
        with self._lock:
            return self._rng.choices(range(len(self.plans)), self._weights)[0]

    def _may_start_at(self, due: float) -> bool:
        if self._stopping.is_set() or due >= self._stop_at:
            return False
        with self._lock:
            if due >= self._measure_from:
                if self.options.total is not None and self._measured_sent >= self.options.total:
                    return False
                self._measured_sent += 1
        return True

    def _next(self, index: int):
        with self._lock:
            return next(self._stubs[index]), next(self._requests[index])

    def _record(self, index: int, code: grpc.StatusCode, due: float, error: str | None) -> None:
        done = time.perf_counter()
        if due >= self._measure_from:
            with self._lock:
                self.recorder.record(self.plans[index].name, code, (done - due) * 1e6, due - self._measure_from, error)

    def _closed_worker(self) -> None:
        meta = self.options.metadata or None
        while True:
            due = time.perf_counter()
            if not self._may_start_at(due):
                return
            index = self._pick()
            stub, request = self._next(index)
            code, error = grpc.StatusCode.OK, None
            try:
                stub(request, timeout=self.options.timeout_s, metadata=meta)
            except grpc.RpcError as exc:
                code, error = exc.code(), _error_text(exc)
            self._record(index, code, due, error)

    def _open_loop(self) -> None:
        rps = float(self.options.rps)
        slots = threading.BoundedSemaphore(max(1, self.options.concurrency))
        meta = self.options.metadata or None
        outstanding = threading.Condition()
        pending = [0]
        start = time.perf_counter()
        issued = 0

        def finished(future, index: int, due: float) -> None:
            code, error = grpc.StatusCode.OK, None
            exc = future.exception()
            if exc is not None:
                code, error = exc.code(), _error_text(exc)
            self._record(index, code, due, error)
            slots.release()
            with outstanding:
                pending[0] -= 1
                outstanding.notify_all()

        while True:
            due = start + issued / rps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if not self._may_start_at(due):
                break
            issued += 1
            slots.acquire()  # a call waiting for a slot is still timed from its due time
            index = self._pick()
            stub, request = self._next(index)
            with outstanding:
                pending[0] += 1
            future = stub.future(request, timeout=self.options.timeout_s, metadata=meta)
            future.add_done_callback(lambda f, i=index, d=due: finished(f, i, d))
        with outstanding:
            outstanding.wait_for(lambda: pending[0] == 0)

    def _progress(self, done: threading.Event) -> None:
        tty = sys.stderr.isatty()
        interval = 1.0 if tty else 10.0
        last_count, last_time = 0, time.perf_counter()
        while not done.wait(interval):
            now = time.perf_counter()
            with self._lock:
                count, errors = self.recorder.count, self.recorder.errors
                p99 = self.recorder.all.percentile_us(99) / 1000
            rate = (count - last_count) / (now - last_time)
            last_count, last_time = count, now
            elapsed = now - self._measure_from
            phase = f"warm-up {-elapsed:4.1f}s left" if elapsed < 0 else f"{elapsed:5.1f}s"
            line = f"[{phase}] {count} calls  {rate:7.1f}/s  p99 {p99:8.2f} ms  errors {errors}"
            print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
        if tty:
            print(file=sys.stderr)

    def run(self) -> RunResult:
        options = self.options
        connect_timeout = min(options.timeout_s, 10.0)
        try:
            for channels in self._channels.values():
                for channel in channels:
                    grpc.channel_ready_future(channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError as exc:
            self.close()
            targets = ", ".join(sorted(self._channels))
            raise ConnectionError(
                f"cannot connect to {targets} within {connect_timeout:g} s: is the service running?"
            ) from exc
        begin = time.perf_counter()
        begin_ns = time.monotonic_ns()
        self._measure_from = begin + options.warmup_s
        if options.duration_s is not None:
            self._stop_at = self._measure_from + options.duration_s
        done = threading.Event()
        progress = threading.Thread(target=self._progress, args=(done,), daemon=True) if options.progress else None
        if progress:
            progress.start()
        try:
            if options.rps:
                self._open_loop()
            else:
                workers = [
                    threading.Thread(target=self._closed_worker, daemon=True)
                    for _ in range(max(1, options.concurrency))
                ]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    while worker.is_alive():
                        worker.join(0.2)  # short joins keep Ctrl-C responsive
        finally:
            done.set()
            if progress:
                progress.join()
            self.close()
        elapsed = time.perf_counter() - max(self._measure_from, begin)
        timings = None
        if self._timing is not None:
            zero = begin_ns + int(options.warmup_s * 1e9)
            stop = zero + int(options.duration_s * 1e9) if options.duration_s is not None else None
            timings = [
                ((s - zero) / 1000, (e - s) / 1000, code)
                for s, e, code in self._timing.samples
                if s >= zero and (stop is None or s < stop)
            ]
        return RunResult(self.recorder, elapsed, "normal", time.time() - elapsed, timings)

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        for channels in self._channels.values():
            for channel in channels:
                channel.close()
