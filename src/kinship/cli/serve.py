"""`kinship serve NAME` runs one service; `kinship serve all` supervises all three.

`all` starts each service as its own process (as on a cluster, where each scales on
its own), waits until every one answers SERVING on the standard health service, and
on Ctrl-C or SIGTERM sends SIGTERM to each so they drain gracefully, killing any that
outlive the grace period. If one of them dies, the others are stopped too and the
command exits non-zero: a half-running suite is worse than a stopped one. If `all`
itself dies, SIGKILL included, the kernel sends each child SIGTERM (parent-death
signal, runtime.processes): nothing is left holding the ports or the data folder.

Start-up refuses, with one line naming the holder (pid and command) and exit code 2,
a port that is taken or a Milvus Lite data folder that another process holds: a
suite left running, or a stale one. `all` reports SERVING only for the processes it
started (the listener on each port is its child or a descendant of it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship.runtime import config, processes
from kinship.runtime.errors import ConfigError
from kinship.runtime.logs import configure_logging

from . import service_logs

SERVICES = {"embedder": 50051, "indexer": 50052, "ranker": 50053}
START_ORDER = ("embedder", "indexer", "ranker")
#: The indexer's Milvus Lite lock under the data dir (kinship.indexer.bootstrap.LITE_LOCK, not imported:
#: that module brings in pymilvus).
LITE_LOCK = Path("milvus") / "gallery.db" / "LOCK"


def _bootstrap(name: str):
    return importlib.import_module(f"kinship.{name}.bootstrap")


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run a service, or all three")
    which = serve.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name in SERVICES:
        # The service's own flags are parsed in run_one, so that other commands do not
        # import every service (and onnxruntime, pymilvus) just to build this parser.
        # Listed for --help only: main() hands `serve NAME ...` to run_one before argparse.
        which.add_parser(
            name, help=f"run the {name} service (`kinship serve {name} --help` lists its settings)", add_help=False
        )
    everything = which.add_parser("all", help="run the three services as separate processes")
    everything.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the Milvus Lite file and caches live [env KINSHIP_DATA_DIR; default ~/.local/share/kinship-search]",
    )
    everything.add_argument("--host", default="127.0.0.1", help="address the services listen on [default 127.0.0.1]")
    for name, port in SERVICES.items():
        everything.add_argument(f"--{name}-port", type=int, default=port, help=f"port of the {name} [default {port}]")
    everything.add_argument("--grace-seconds", type=float, default=10.0, help="drain time on shutdown [default 10]")
    everything.add_argument(
        "--start-timeout", type=float, default=180.0, help="how long to wait for all three to be SERVING [default 180]"
    )
    everything.add_argument(
        "--sample-gallery",
        action="store_true",
        help="enrol the small sample gallery the first time, and print example commands",
    )
    everything.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        help="run the suite with mutual TLS from this folder (`kinship certs init`); the services call each other "
        "with its service.crt [env KINSHIP_TLS_DIR]",
    )
    everything.add_argument(
        "--as",
        dest="as_name",
        metavar="NAME",
        help="with --tls-dir and --sample-gallery: the enroller certificate NAME.crt that enrols the sample",
    )
    everything.add_argument(
        "--plaintext", action="store_true", help="allow plaintext on a non-loopback --host (local development only)"
    )
    everything.add_argument(
        "--logs",
        metavar="DIR|-",
        default=None,
        help="where the services' own logs go: a folder, one file per service (embedder.log, indexer.log, "
        "ranker.log, appended to), or - for this terminal; this terminal shows a summary and the services' "
        "warnings and errors, one line each [default DATA_DIR/logs]",
    )
    everything.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=None,
        help="the services' log format: json (one object per line, for machines) or console (for people) "
        "[env KINSHIP_LOG_FORMAT; default json]",
    )
    everything.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=None,
        help="the services' log level [env KINSHIP_LOG_LEVEL; default info]",
    )
    everything.set_defaults(func=run_all)


def service_parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"kinship serve {name}",
        description=f"Run the {name} service. Each setting is a flag or an environment variable; flags win.",
    )
    config.add_arguments(parser, _bootstrap(name).settings())
    return parser


def run_one(name: str, argv: list[str]) -> int:
    """`kinship serve NAME [flags]`: settings from flags and environment, then serve until SIGTERM."""
    bootstrap = _bootstrap(name)
    flags = service_parser(name).parse_args(argv)
    try:
        settings = config.resolve(bootstrap.settings(), flags)
    except ConfigError as exc:
        print(f"kinship serve {name}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, service=name)
    from . import serve_processes

    index = serve_processes.worker_index()
    if index is None:  # copies share the port their supervisor found free
        taken = taken_ports(settings)
        if taken:
            print(f"kinship serve {name}: {taken}", file=sys.stderr)
            return 2
    if settings.processes > 1 and index is None:
        if settings.port == 0:
            print(f"kinship serve {name}: --processes needs a fixed --port (copies must share it)", file=sys.stderr)
            return 2
        return serve_processes.supervise(name, argv, settings.processes, settings.grace_seconds)
    if index:  # copies after the first share the gRPC port only
        settings.metrics_port, settings.health_port = -1, -1
    from kinship.runtime.server import run_service

    try:
        run_service(bootstrap.build, settings)
    except ConfigError as exc:  # e.g. a model file that fails its checksum, a data dir that cannot be made
        print(f"kinship serve {name}: refused to start: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"kinship serve {name}: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


def _kill_hint(pids: list[int]) -> str:
    return f"stop {'it' if len(pids) == 1 else 'them'} (kill {' '.join(map(str, pids))})" if pids else "stop it"


def taken_ports(settings) -> str | None:
    """One line naming the holders of the ports `settings` would listen on, None when all are free."""
    flags = (("--port", settings.port), ("--metrics-port", settings.metrics_port))
    flags += (("--health-port", getattr(settings, "health_port", -1)),)
    problems, pids, choose = [], [], []
    for flag, port in flags:
        if port > 0 and processes.port_taken(settings.host, port):
            holders = processes.port_holders(port)
            problems.append(f"port {port} on {settings.host} is taken by {processes.describe(holders)}")
            pids += [h.pid for h in holders if h.pid not in pids]
            choose.append(flag)
    if not problems:
        return None
    return f"{'; '.join(problems)}; {_kill_hint(pids)} or choose another with {' / '.join(choose)}"


@dataclass
class Child:
    name: str
    port: int
    process: subprocess.Popen


def wait_serving(
    address: str,
    deadline: float,
    process: subprocess.Popen | None = None,
    tls_dir: Path | None = None,
    owned: bool = False,
) -> bool:
    """Polls the health service at `address` until SERVING or `deadline` (time.monotonic).

    With `owned`, a SERVING answer counts only when `process` (or a descendant of it) is
    what listens on the port, where the OS tells: another server there, a stale one, is not it.
    """
    from kinship.runtime.clients import sync_channel
    from kinship.security.client import ClientSecurity
    from kinship.security.transport import ClientTls

    security = ClientSecurity(tls=ClientTls(tls_dir) if tls_dir else None)
    with sync_channel(address, security=security) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                return False
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    if not owned or process is None or _listens_itself(process.pid, address):
                        return True
            except grpc.RpcError:
                pass
            time.sleep(0.25)
    return False


def _listens_itself(pid: int, address: str) -> bool:
    listeners = processes.pids_listening_on(int(address.rsplit(":", 1)[1]))
    return not listeners or any(processes.descends_from(p, pid) for p in listeners)


def _already_running(host: str, ports: dict[str, int], data_dir: Path) -> str | None:
    """One line naming what holds the suite's ports or its Milvus Lite folder, None when nothing does."""
    problems, pids = [], []
    for name, port in ports.items():
        if processes.port_taken(host, port):
            holders = processes.port_holders(port)
            problems.append(f"port {port} ({name}) is taken by {processes.describe(holders)}")
            pids += [h.pid for h in holders if h.pid not in pids]
    if not os.environ.get("KINSHIP_MILVUS_URI"):  # the indexer would open the Lite file in data_dir
        holders = processes.lock_holders(data_dir / LITE_LOCK)
        if holders is not None:
            problems.append(f"the data folder {data_dir} is locked (Milvus Lite) by {processes.describe(holders)}")
            pids += [h.pid for h in holders if h.pid not in pids]
    if not problems:
        return None
    return (
        f"a suite is already running here, or a stale one: {'; '.join(problems)}; {_kill_hint(pids)}, or choose "
        "other ports (--embedder-port, --indexer-port, --ranker-port) and another --data-dir"
    )


def _stop_children(children: list[Child], grace: float) -> None:
    # Reverse start order: the ranker stops taking calls before its dependencies go.
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace + 5
    for child in reversed(children):
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.process.wait(remaining)
        except subprocess.TimeoutExpired:
            print(f"kinship: {child.name} did not stop within the grace period; killing it", file=sys.stderr)
            child.process.kill()
            child.process.wait()


def run_all(args: argparse.Namespace) -> int:
    data_dir = (args.data_dir or Path(os.environ.get("KINSHIP_DATA_DIR") or config.default_data_dir())).expanduser()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"kinship serve all: cannot create the data directory {data_dir}: {exc}; pass --data-dir", file=sys.stderr
        )
        return 2
    tls_dir = args.tls_dir or (Path(os.environ["KINSHIP_TLS_DIR"]) if os.environ.get("KINSHIP_TLS_DIR") else None)
    if tls_dir is not None and args.sample_gallery and not args.as_name:
        print(
            "kinship serve all: with --tls-dir, --sample-gallery needs --as NAME (an enroller certificate)",
            file=sys.stderr,
        )
        return 2
    ports = {name: getattr(args, f"{name}_port") for name in SERVICES}
    # Listening on every address, the services reach each other on localhost (a name server.crt holds).
    connect_host = "localhost" if args.host in ("0.0.0.0", "::", "[::]") else args.host
    addresses = {name: f"{connect_host}:{port}" for name, port in ports.items()}
    busy = _already_running(args.host, ports, data_dir)
    if busy:
        print(f"kinship serve all: {busy}", file=sys.stderr)
        return 2
    log_dir = None if args.logs == "-" else Path(args.logs).expanduser() if args.logs else data_dir / "logs"
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"kinship serve all: cannot create the log folder {log_dir}: {exc}; pass --logs", file=sys.stderr)
            return 2
    relay = service_logs.Relay() if log_dir is not None else None

    stop_requested = False

    def request_stop(signum, _frame):
        nonlocal stop_requested
        stop_requested = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: list[Child] = []
    exit_code = 0
    try:
        deadline = time.monotonic() + args.start_timeout
        for name in START_ORDER:
            cmd = [
                sys.executable,
                "-m",
                "kinship.cli.main",
                "serve",
                name,
                "--host",
                args.host,
                "--port",
                str(ports[name]),
                "--grace-seconds",
                str(args.grace_seconds),
            ]
            # Each service keeps its own audit chain in the data dir.
            cmd += ["--audit-log", str(data_dir / "audit" / f"{name}.audit.jsonl")]
            if tls_dir is not None:
                cmd += ["--tls-dir", str(tls_dir)]
            if args.plaintext:
                cmd += ["--plaintext", "true"]
            if name == "indexer":
                cmd += ["--data-dir", str(data_dir)]
            if name in ("embedder", "ranker"):
                cmd += ["--artifacts-dir", str(data_dir / "artifacts")]
            if name == "ranker":
                cmd += ["--embedder-address", addresses["embedder"], "--indexer-address", addresses["indexer"]]
            if args.log_format:
                cmd += ["--log-format", args.log_format]
            if args.log_level:
                cmd += ["--log-level", args.log_level]
            log_file = service_logs.open_log(log_dir, name) if log_dir is not None else None
            # Children ignore Ctrl-C from the terminal's process group: the supervisor
            # decides when and how they stop (SIGTERM, then a grace period). If the
            # supervisor dies, SIGKILL included, the kernel sends them SIGTERM.
            # With a log folder, the service writes its log (stdout and stderr) straight to its file, which
            # outlives this supervisor; the relay shows its warnings and errors here, one line each.
            try:
                process = subprocess.Popen(
                    cmd,
                    start_new_session=True,
                    preexec_fn=processes.die_with_parent(signal.SIGTERM),
                    stdout=log_file,
                    stderr=subprocess.STDOUT if log_file is not None else None,
                )
            finally:
                if log_file is not None:
                    log_file.close()
            children.append(Child(name, ports[name], process))
            if relay is not None:
                relay.follow(name, service_logs.log_path(log_dir, name))
            print(f"kinship: started {name} (pid {process.pid}) on {addresses[name]}", file=sys.stderr)
        for child in children:
            if stop_requested:
                break
            if not wait_serving(addresses[child.name], deadline, child.process, tls_dir, owned=True):
                if child.process.poll() is not None:
                    why = f"exited with code {child.process.returncode}"
                else:
                    why = f"did not become SERVING on {addresses[child.name]} within {args.start_timeout:.0f}s"
                where = "see its log above"
                if log_dir is not None:
                    where = f"the end of its log, {service_logs.log_path(log_dir, child.name)}:"
                print(f"kinship serve all: {child.name} {why} ({where}); stopping", file=sys.stderr)
                if log_dir is not None:
                    service_logs.print_tail(service_logs.log_path(log_dir, child.name))
                return 1
        if stop_requested:
            return 0
        pids = ", ".join(str(child.process.pid) for child in children)
        print(f"kinship: all three services are SERVING (pids {pids}; data in {data_dir})", file=sys.stderr)
        if relay is not None:
            relay.ready()
        if log_dir is not None:
            print(
                f"kinship: the services' logs are in {log_dir} ({', '.join(f'{n}.log' for n in START_ORDER)}); "
                "their warnings and errors show here (--logs - shows every line here)",
                file=sys.stderr,
            )
        if args.sample_gallery:
            from kinship.security import client as client_security

            from . import sample

            if tls_dir is not None:
                client_security.configure(client_security.from_options(tls_dir, args.as_name))
            sample.ensure_sample_gallery(data_dir, addresses)
        print("kinship: press Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop_requested:
            for child in children:
                if child.process.poll() is not None:
                    print(
                        f"kinship serve all: {child.name} exited with code {child.process.returncode}; stopping the others",
                        file=sys.stderr,
                    )
                    if log_dir is not None:
                        service_logs.print_tail(service_logs.log_path(log_dir, child.name))
                    exit_code = 1
                    stop_requested = True
                    break
            time.sleep(0.2)
        return exit_code
    finally:
        _stop_children(children, args.grace_seconds)
        if relay is not None:
            relay.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("kinship: stopped", file=sys.stderr)
