"""One way to run a gRPC service: start-up, health, reflection, shutdown.

A service hands the runtime a `Service` (what to register, how to tell it is ready,
how to close it); the runtime owns everything else the same way for all three:

- a `grpc.aio` server with the configured message size limits and interceptors;
- the standard health service: NOT_SERVING until the service's readiness check
  passes, then re-checked every `health_interval_seconds`, so health tells the truth
  when Milvus or a dependency goes away and comes back;
- server reflection with the full service names, so grpcurl/ghz work without protos;
- graceful shutdown on SIGTERM or SIGINT: health turns NOT_SERVING first, in-flight
  calls get `grace_seconds` to finish, then the server stops and the service closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from .admission import DEFAULT_MAX_CONCURRENT_CALLS, HARD_LIMIT_HEADROOM, Admission, AdmissionInterceptor
from .allocator import cap_malloc_arenas
from .collector import freeze_startup_objects
from .health_server import HealthOnlyServer
from .interceptors import CallContextInterceptor, RuntimeInterceptor
from .logs import get_logger
from .metrics import serve_metrics

log = get_logger("kinship.server")

MIB = 1024 * 1024


class Service(Protocol):
    """What a service gives the runtime. Built by the service's bootstrap."""

    #: Short name: "embedder", "indexer" or "ranker".
    name: str
    #: Full gRPC service names, e.g. ("kinship.v1.Embedder",): for health and reflection.
    service_names: Sequence[str]

    def register(self, server: grpc.aio.Server) -> None:
        """Adds the servicer(s) to the server."""

    async def check_ready(self) -> None:
        """Returns when the service can do its work; raises with the reason when not."""

    async def close(self) -> None:
        """Releases what the service holds (sessions, clients), after the server stopped."""


# Defaults of config.connection_settings(), for callers without settings (CLI, tests).
DEFAULT_KEEPALIVE_SECONDS = 30.0
DEFAULT_DNS_MIN_REFRESH_SECONDS = 10.0
KEEPALIVE_TIMEOUT_MS = 20_000
# Per call over every address a dns:/// name resolves to (a headless Service's pods);
# gRPC's default, pick_first, would pin every call of a channel to one pod.
ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def server_options(settings: SimpleNamespace) -> list[tuple[str, Any]]:
    limit = int(settings.max_message_mb * MIB)
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ]
    window = getattr(settings, "stream_window_mb", 0)
    if window > 0:
        # Without BDP probing the stream window stays at the lookahead: a fast sender of a long
        # stream waits for the service instead of filling its memory (a standalone probe: ~64 MiB a stream with it on).
        options += [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", int(window * MIB))]
    age = getattr(settings, "max_connection_age_seconds", None)
    if age is not None:
        options += [
            # Clients reconnect (and re-resolve DNS) after this age: a scale-up gets traffic.
            ("grpc.max_connection_age_ms", _ms(age)),
            ("grpc.max_connection_age_grace_ms", _ms(settings.max_connection_age_grace_seconds)),
        ]
    keepalive = getattr(settings, "keepalive_seconds", None)
    if keepalive is not None:
        options += [
            ("grpc.keepalive_time_ms", _ms(keepalive)),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            # Clients may ping this often without a GOAWAY too_many_pings (C-core's default: 5 minutes).
            # The name is C-core's GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS.
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(settings.min_ping_interval_seconds)),
            ("grpc.http2.max_ping_strikes", 2),
        ]
    return options


def client_options(
    max_message_mb: float,
    *,
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS,
    dns_min_refresh_seconds: float = DEFAULT_DNS_MIN_REFRESH_SECONDS,
) -> list[tuple[str, Any]]:
    limit = int(max_message_mb * MIB)
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG),
        # Our own service config, never one from DNS TXT records.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.dns_min_time_between_resolutions_ms", _ms(dns_min_refresh_seconds)),
        ("grpc.keepalive_time_ms", _ms(keepalive_seconds)),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def max_concurrent_calls(service: Service, settings: SimpleNamespace) -> int:
    """The admission bound: the setting when given (> 0), else the service's own, else the default."""
    configured = getattr(settings, "max_concurrent_calls", 0) or 0
    if configured > 0:
        return configured
    return int(getattr(service, "max_concurrent_calls", 0) or DEFAULT_MAX_CONCURRENT_CALLS)


@dataclass
class RunningServer:
    """A started server: its bound port and what is needed to stop it."""

    server: grpc.aio.Server
    service: Service
    health: HealthServicer
    port: int
    settings: SimpleNamespace
    _health_task: asyncio.Task | None = None
    _ready: bool | None = None
    metrics_port: int | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    admission: Admission | None = None
    health_server: HealthOnlyServer | None = None
    _completed_at_last_check: int = 0

    @property
    def health_port(self) -> int | None:
        return self.health_server.port if self.health_server else None

    async def _set_all(self, status: int) -> None:
        for name in ("", *self.service.service_names):
            await self.health.set(name, status)
            if self.health_server is not None:
                self.health_server.set(name, status)

    def _busy_not_broken(self, exc: BaseException) -> bool:
        """A readiness check that timed out while the service kept finishing calls: busy, not down.

        Under load a dependency ping can wait behind request work; turning NOT_SERVING then
        would take the replica (and every ranker that depends on it) out of rotation for
        being busy, which is what admission control already answers.
        """
        if self.admission is None or not self._ready or not isinstance(exc, TimeoutError):
            return False
        completed = self.admission.admitted - self.admission.in_flight
        return completed > self._completed_at_last_check

    async def refresh_health(self) -> bool:
        """Runs the readiness check once and publishes the result."""
        try:
            await self.service.check_ready()
            ready, reason = True, None
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason logged
            ready, reason = False, f"{type(exc).__name__}: {exc}"
            if self._busy_not_broken(exc):
                ready = True
                log.info("readiness check timed out while calls kept completing; still SERVING", reason=reason)
        if self.admission is not None:
            self._completed_at_last_check = self.admission.admitted - self.admission.in_flight
        if ready != self._ready:
            if ready:
                log.info("service ready", health="SERVING")
            else:
                log.warning("service not ready", health="NOT_SERVING", reason=reason)
        self._ready = ready
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        await self._set_all(status)
        return ready

    async def _health_loop(self) -> None:
        while True:
            await self.refresh_health()
            await asyncio.sleep(self.settings.health_interval_seconds)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, drain in-flight calls within `grace`, stop, close."""
        if self.stopped.is_set():
            return
        grace = self.settings.grace_seconds if grace is None else grace
        log.info("shutting down", grace_seconds=grace)
        if self._health_task:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.health.enter_graceful_shutdown()
        if self.health_server is not None:
            self.health_server.enter_graceful_shutdown()
        await self.server.stop(grace)
        try:
            if self.health_server is not None:
                await asyncio.to_thread(self.health_server.stop, 1.0)
            await self.service.close()
        finally:
            self.stopped.set()
            log.info("stopped")


async def start_server(service: Service, settings: SimpleNamespace) -> RunningServer:
    """Builds, binds and starts the server for `service`; health starts NOT_SERVING."""
    from kinship.security.gates import build_interceptors
    from kinship.security.transport import server_credentials

    credentials = server_credentials(settings)  # None: plaintext, allowed on loopback or with --plaintext
    admission = Admission(service.name, max_concurrent_calls(service, settings))
    access_log_sample = getattr(settings, "access_log_sample", 1.0)
    options = server_options(settings)
    if getattr(settings, "processes", 1) > 1:
        # Several processes share the port (kinship serve NAME --processes N): the kernel spreads connections.
        options = [o for o in options if o[0] != "grpc.so_reuseport"] + [("grpc.so_reuseport", 1)]
    security = build_interceptors(service.name, settings)
    chain = [
        # Order: request id, logging and error mapping outermost; then who calls and may they
        # (refusals audited); admission innermost, so only callers let in take a slot.
        CallContextInterceptor(service.name, access_log_sample=access_log_sample),
        *security,
        AdmissionInterceptor(admission),
    ]
    # Refusals at capacity come before the chain: the audit counts them, one event per RPC a second.
    on_shed = next((i.shed.note for i in security if hasattr(i, "shed")), None)
    server = grpc.aio.server(
        # Health and reflection skip the chain; while admission is full, refusals come before it.
        interceptors=[RuntimeInterceptor(service.name, chain, admission, on_shed)],
        options=options,
        # The hard backstop behind admission control: grpc itself refuses past it, no queue.
        maximum_concurrent_rpcs=admission.limit + HARD_LIMIT_HEADROOM,
    )
    service.register(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (*service.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    address = f"{settings.host}:{settings.port}"
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc reports a failed bind this way
        port = 0
        cause: Exception | None = exc
    else:
        cause = None
    if port == 0:
        from kinship.runtime.processes import describe, port_holders

        holders = port_holders(settings.port) if settings.port > 0 else []
        by = f" (by {describe(holders)})" if holders else ""
        raise OSError(
            f"cannot listen on {address}: the port is taken{by} or the address is not local; "
            f"choose another with --port or --host"
        ) from cause
    running = RunningServer(server=server, service=service, health=health, port=port, settings=settings)
    running.admission = admission
    health_port = getattr(settings, "health_port", -1)
    if health_port >= 0:
        running.health_server = HealthOnlyServer(settings.host, health_port)
    await running._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
    if running.health_server is not None:
        running.health_server.start()
    await server.start()
    if settings.metrics_port >= 0:
        running.metrics_port = serve_metrics(settings.host, settings.metrics_port)
    log.info(
        "listening",
        address=f"{settings.host}:{port}",
        metrics_port=running.metrics_port,
        health_port=running.health_port,
        max_concurrent_calls=admission.limit,
        event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
    )
    await running.refresh_health()
    running._health_task = asyncio.create_task(running._health_loop())
    return running


async def serve_until_signalled(service: Service, settings: SimpleNamespace) -> None:
    """Runs `service` until SIGTERM or SIGINT, then shuts it down gracefully."""
    running = await start_server(service, settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()


def run_service(build: Callable[[SimpleNamespace], Awaitable[Service] | Service], settings: SimpleNamespace) -> None:
    """Entry point of `kinship serve NAME`: builds the service in the loop and serves it."""

    arenas = getattr(settings, "malloc_arena_max", 0) or 0
    if arenas > 0 and not cap_malloc_arenas(arenas):
        log.info("malloc_arena_max ignored: the C library is not glibc", malloc_arena_max=arenas)
    switch_ms = getattr(settings, "switch_interval_ms", 0.0) or 0.0
    if switch_ms > 0:
        sys.setswitchinterval(switch_ms / 1000)
        log.info("GIL switch interval set", switch_interval_ms=switch_ms)

    async def main() -> None:
        built = build(settings)
        service = await built if asyncio.iscoroutine(built) else built
        # What start-up built lives as long as the process: full collections skip it (runtime.collector).
        log.info("start-up objects frozen", objects=freeze_startup_objects())
        await serve_until_signalled(service, settings)

    with asyncio.Runner(loop_factory=event_loop_factory(getattr(settings, "event_loop", "asyncio"))) as runner:
        runner.run(main())


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop named (`uvloop` or `asyncio`; None: asyncio's own default).

    uvloop runs the loop's own work (callbacks, the selector, timers, the wake-ups from grpc's
    polling thread) in C: at a million rows the indexer spent 3 to 6 % less CPU per search
    than on asyncio's loop, and answered 15 % more health checks per CPU second, measured
    side by side (docs/benchmarks.md, "Costs behind the defaults").
    """
    if name == "asyncio":
        return None
    if name != "uvloop":
        raise ValueError(f"unknown event loop {name!r}: choose uvloop or asyncio")
    import uvloop

    return uvloop.new_event_loop


class ServerThread:
    """Runs a service's server in a background thread with its own event loop.

    For tests and tools that want a real server on an ephemeral port while they
    talk to it with ordinary (blocking) gRPC clients::

        with ServerThread(build, settings) as srv:
            channel = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    """

    def __init__(self, build: Callable[[SimpleNamespace], Awaitable[Service] | Service], settings: SimpleNamespace):
        self._build = build
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kinship-server", daemon=True)
        self.running: RunningServer | None = None

    @property
    def port(self) -> int:
        assert self.running is not None, "server not started"
        return self.running.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServerThread:
        self._thread.start()

        async def boot() -> RunningServer:
            built = self._build(self._settings)
            service = await built if asyncio.iscoroutine(built) else built
            return await start_server(service, self._settings)

        try:
            self.running = asyncio.run_coroutine_threadsafe(boot(), self._loop).result(timeout)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            raise
        return self

    def call(self, coro_factory: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
        """Runs a coroutine in the server's loop (e.g. to flip health in a test)."""
        return asyncio.run_coroutine_threadsafe(coro_factory(), self._loop).result(timeout)

    def stop(self, grace: float | None = None, timeout: float = 60.0) -> None:
        if self.running is not None:
            running = self.running
            self.call(lambda: running.stop(grace), timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=1.0)
