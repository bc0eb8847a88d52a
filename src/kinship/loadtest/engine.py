"""The load generator: closed loop (`--concurrency`) or open loop (`--rps`), on grpc.aio.

Closed loop: N workers, each sends its next call when the previous one answered.
Open loop: calls are due at fixed times (t0 + i/rps) whatever the server does, and
each call's latency is measured from the time it was due, not from when it was sent:
if the generator or the server falls behind, the wait shows in the latency instead
of being hidden (no coordinated omission). `--concurrency` then only caps the calls
in flight, and a call waiting for a slot is still timed from its due time.

Requests are serialized once (see `inputs`) and responses are not parsed, so the
generator spends its time on gRPC, not on protobuf.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from .recorder import Recorder

_IDENTITY: Callable[[bytes], bytes] = lambda payload: payload  # noqa: E731 - requests are already bytes


@dataclass
class CallPlan:
    """One kind of call of the run: where, what, how often (relative weight)."""

    name: str
    target: str
    path: str
    requests: Sequence[bytes]
    weight: float = 1.0


@dataclass
class TLS:
    cacert: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None

    @property
    def enabled(self) -> bool:
        return self.cacert is not None or self.cert is not None


@dataclass
class RunOptions:
    concurrency: int = 50
    rps: float | None = None
    duration_s: float | None = None
    total: int | None = None
    warmup_s: float = 0.0
    connections: int = 1
    timeout_s: float = 20.0
    metadata: tuple[tuple[str, str], ...] = ()
    tls: TLS = field(default_factory=TLS)
    window_s: float | None = None
    seed: int = 0
    progress: bool = True
    max_message_mb: float = 16.0
    record_timings: bool = False


@dataclass
class RunResult:
    recorder: Recorder
    elapsed_s: float
    end_reason: str
    started_at: float  # time.time() when the measured phase began
    #: With --record: (start, latency) in microseconds from the measured phase's start, and status, per call.
    timings: list[tuple[float, float, str]] | None = None


class TimingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Times each call a second way, apart from the engine (`--record`): an independent check of its figures.

    Its own clock (time.monotonic_ns), its own place (inside grpc's call path), its own
    storage (a plain list of samples, written as CSV): percentiles computed from these
    with numpy must agree with the report's HDR percentiles for closed-loop runs. For
    open-loop runs the report's latency also holds the wait from the call's due time.
    """

    def __init__(self) -> None:
        self.samples: list[tuple[int, int, str]] = []  # (start ns, end ns, status name)

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        started = time.monotonic_ns()
        call = await continuation(client_call_details, request)
        try:
            await call
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        self.samples.append((started, time.monotonic_ns(), code))
        return call


class _Channels:
    """`connections` HTTP/2 connections per target; calls go round-robin over them."""

    def __init__(self, options: RunOptions, timing: TimingInterceptor | None = None):
        self._options = options
        self._interceptors = [timing] if timing is not None else None
        self._channels: dict[str, list[grpc.aio.Channel]] = {}
        self._callables: dict[tuple[str, str], itertools.cycle] = {}

    def _open(self, target: str) -> list[grpc.aio.Channel]:
        limit = int(self._options.max_message_mb * 1024 * 1024)
        base = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Without a local pool, channels to the same target share one subchannel (one connection).
            ("grpc.use_local_subchannel_pool", 1),
        ]
        tls = self._options.tls
        channels = []
        for _ in range(max(1, self._options.connections)):
            if tls.enabled:
                creds = grpc.ssl_channel_credentials(tls.cacert, tls.key, tls.cert)
                extra = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
                channels.append(
                    grpc.aio.secure_channel(target, creds, options=base + extra, interceptors=self._interceptors)
                )
            else:
                channels.append(grpc.aio.insecure_channel(target, options=base, interceptors=self._interceptors))
        return channels

    def callable_for(self, plan: CallPlan):
        key = (plan.target, plan.path)
        if key not in self._callables:
            channels = self._channels.setdefault(plan.target, self._open(plan.target))
            self._callables[key] = itertools.cycle(
                [
                    c.unary_unary(plan.path, request_serializer=_IDENTITY, response_deserializer=_IDENTITY)
                    for c in channels
                ]
            )
        return next(self._callables[key])

    async def wait_ready(self, timeout: float) -> None:
        for channels in self._channels.values():
            await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), timeout) for c in channels))

    async def close(self) -> None:
        for channels in self._channels.values():
            for channel in channels:
                await channel.close()


def _error_text(exc: grpc.aio.AioRpcError) -> str:
    # ghz's errorDistribution keys read like Go's status errors.
    from .recorder import go_code_name

    return f"rpc error: code = {go_code_name(exc.code())} desc = {exc.details()}"


class LoadRun:
    def __init__(self, plans: Sequence[CallPlan], options: RunOptions, recorder: Recorder | None = None):
        if not plans:
            raise ValueError("no call to make")
        self.plans = list(plans)
        self.options = options
        self.recorder = recorder or Recorder(options.window_s)
        self._rng = random.Random(options.seed)
        self._weights = [p.weight for p in self.plans]
        self._request_counters = [itertools.cycle(p.requests) for p in self.plans]
        self._timing = TimingInterceptor() if options.record_timings else None
        self._channels = _Channels(options, self._timing)
        self.sent = 0
        self.in_flight = 0
        self._measure_from = 0.0  # perf_counter when warm-up ends
        self._stop_at = float("inf")
        self._stopping = False
        self._measured_sent = 0

    # One call ---------------------------------------------------------------------

    def _pick(self) -> int:
        if len(self.plans) == 1:
            return 0
        return self._rng.choices(range(len(self.plans)), self._weights)[0]

    async def _call(self, index: int, due: float) -> None:
        """Sends one call; its latency counts from `due` (perf_counter)."""
        plan = self.plans[index]
        request = next(self._request_counters[index])
        stub = self._channels.callable_for(plan)
        self.in_flight += 1
        code, error = grpc.StatusCode.OK, None
        try:
            await stub(request, timeout=self.options.timeout_s, metadata=self.options.metadata or None)
        except grpc.aio.AioRpcError as exc:
            code, error = exc.code(), _error_text(exc)
        finally:
            self.in_flight -= 1
        done = time.perf_counter()
        if due >= self._measure_from:
            self.recorder.record(plan.name, code, (done - due) * 1e6, due - self._measure_from, error)

    # Loops ------------------------------------------------------------------------

    def _may_start_at(self, due: float) -> bool:
        """Whether a call due at `due` is still part of the run; counts it when it is."""
        if self._stopping or due >= self._stop_at:
            return False
        if due >= self._measure_from:
            if self.options.total is not None and self._measured_sent >= self.options.total:
                return False
            self._measured_sent += 1
        self.sent += 1
        return True

    async def _closed_worker(self) -> None:
        while True:
            due = time.perf_counter()
            if not self._may_start_at(due):
                return
            await self._call(self._pick(), due)

    async def _open_loop(self) -> None:
        rps = float(self.options.rps)
        slots = asyncio.Semaphore(max(1, self.options.concurrency))
        tasks: set[asyncio.Task] = set()
        start = time.perf_counter()
        issued = 0

        async def one(index: int, due: float) -> None:
            async with slots:
                await self._call(index, due)

        while True:
            now = time.perf_counter()
            # Everything due by now goes out at once; the loop then sleeps until the next one is due.
            while start + issued / rps <= now:
                due = start + issued / rps
                if not self._may_start_at(due):
                    await asyncio.gather(*tasks)
                    return
                issued += 1
                task = asyncio.create_task(one(self._pick(), due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, start + issued / rps - time.perf_counter()))

    # Progress ---------------------------------------------------------------------

    async def _progress(self) -> None:
        tty = sys.stderr.isatty()
        last_count, last_time = 0, time.perf_counter()
        interval = 1.0 if tty else 10.0
        while True:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            count = self.recorder.count
            rate = (count - last_count) / (now - last_time)
            last_count, last_time = count, now
            elapsed = now - self._measure_from
            if elapsed < 0:
                phase = f"warm-up {-elapsed:4.1f}s left"
            elif self.options.duration_s:
                phase = f"{elapsed:5.1f}s/{self.options.duration_s:g}s"
            else:
                phase = f"{count}/{self.options.total}"
            p99 = self.recorder.all.percentile_us(99) / 1000
            line = (
                f"[{phase}] {count} calls  {rate:7.1f}/s  p99 {p99:8.2f} ms  "
                f"errors {self.recorder.errors}  in flight {self.in_flight}"
            )
            print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    # Run --------------------------------------------------------------------------

    async def run(self) -> RunResult:
        options = self.options
        for plan in self.plans:
            self._channels.callable_for(plan)
        connect_timeout = min(options.timeout_s, 10.0)
        try:
            await self._channels.wait_ready(connect_timeout)
        except TimeoutError as exc:
            await self._channels.close()
            targets = ", ".join(sorted({p.target for p in self.plans}))
            raise ConnectionError(
                f"cannot connect to {targets} within {connect_timeout:g} s: is the service running?"
            ) from exc
        begin = time.perf_counter()
        begin_ns = time.monotonic_ns()
        self._measure_from = begin + options.warmup_s
        if options.duration_s is not None:
            self._stop_at = self._measure_from + options.duration_s
        progress = asyncio.create_task(self._progress()) if options.progress else None
        end_reason = "normal"
        try:
            if options.rps:
                await self._open_loop()
            else:
                await asyncio.gather(*(self._closed_worker() for _ in range(max(1, options.concurrency))))
        except asyncio.CancelledError:
            end_reason = "cancel"
            raise
        finally:
            if progress:
                progress.cancel()
                if sys.stderr.isatty():
                    print(file=sys.stderr)
            await self._channels.close()
        elapsed = time.perf_counter() - max(self._measure_from, begin)
        timings = None
        if self._timing is not None:
            zero = begin_ns + int(options.warmup_s * 1e9)
            stop = zero + int(options.duration_s * 1e9) if options.duration_s is not None else None
            timings = [
                ((start - zero) / 1000, (end - start) / 1000, code)
                for start, end, code in self._timing.samples
                if start >= zero and (stop is None or start < stop)
            ]
        return RunResult(self.recorder, elapsed, end_reason, time.time() - elapsed, timings)

    def stop(self) -> None:
        """Stops sending new calls (e.g. on Ctrl-C); calls in flight finish."""
        self._stopping = True
