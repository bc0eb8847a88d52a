"""`kinship loadtest` and `kinship soak`.

    kinship loadtest 127.0.0.1:50051 --call kinship.v1.Embedder/Embed --images photos/ --concurrency 4 --duration 30s
    kinship loadtest 127.0.0.1:50051 --call grpc.health.v1.Health/Check --rps 2000 --duration 10s --format json
    kinship loadtest --scenario suite.toml --rps 20 --duration 1m
    kinship soak 127.0.0.1:50053 --call kinship.v1.KinshipRanker/FindRelatives --families DIR --rps 5 \
        --duration 10m --watch embedder=:50051 --watch indexer=:50052 --watch ranker=:50053

Flags carry ghz's names for the same ideas (`--concurrency`, `--rps`, `--duration`,
`--total`, `--connections`, `--timeout`, `--data`, `--data-file`, `--metadata`,
`--cacert`, `--cert`, `--key`, `--insecure`, `--format`, `--output`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import threading
import time
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinship.runtime.errors import KinshipError

if TYPE_CHECKING:  # the heavy modules load when a run starts, not with every `kinship` command
    import grpc

    from .engine import TLS, CallPlan, RunOptions, RunResult

FORMATS = ("summary", "json", "csv", "prometheus")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """'10s', '1.5m', '500ms', '2h' or a bare number of seconds -> seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use 500ms, 10s, 2m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("request bodies (default: synthetic, or the empty request)")
    group.add_argument(
        "-d", "--data", help="request body in the protobuf JSON mapping (an object, or an array to cycle)"
    )
    group.add_argument("-D", "--data-file", type=Path, help="file with the request body/bodies in protobuf JSON")
    group.add_argument("--images", type=Path, help="real photos (a file or a folder) for Embed and FindRelatives")
    group.add_argument(
        "--families", type=Path, help="a KinFaceW-I-like data set (pairs.csv, images/) for FindRelatives"
    )
    group.add_argument("--relatives", type=int, default=1, help="relatives per FindRelatives request [default 1]")
    group.add_argument("--model-id", help="gallery model for Search/Upsert [default: the indexer's first collection]")
    group.add_argument("--dimension", type=int, help="vector size for Search/Upsert [default: the collection's]")
    group.add_argument("--batch", type=int, default=1, help="queries per Search, records per Upsert [default 1]")
    group.add_argument("--top-k", type=int, default=10, help="top_k of Search, top_n of FindRelatives [default 10]")
    group.add_argument(
        "--image-size", default="640x480", help="synthetic image size WIDTHxHEIGHT (no --images) [default 640x480]"
    )


def _add_run_arguments(parser: argparse.ArgumentParser, *, soak: bool) -> None:
    parser.add_argument("target", nargs="?", help="HOST:PORT of the service (a scenario may name its own)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--call", help="SERVICE/METHOD, e.g. kinship.v1.Embedder/Embed or grpc.health.v1.Health/Check")
    what.add_argument(
        "--scenario", type=Path, help="TOML or JSON file with a weighted mix of calls (see docs/benchmarks.md)"
    )
    run = parser.add_argument_group("load")
    run.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=None,
        help="closed loop: callers at once [default 50]; with --rps: most calls in flight [default 1000]",
    )
    run.add_argument(
        "-r", "--rps", type=float, required=soak, help="open loop: calls per second, timed from when each was due"
    )
    run.add_argument(
        "-z",
        "--duration",
        type=parse_duration,
        default=None,
        help="how long to measure (10s, 2m) [default 10s unless --total]",
    )
    run.add_argument("-n", "--total", type=int, help="number of calls to measure (instead of --duration)")
    run.add_argument(
        "--warmup", type=parse_duration, default=0.0, help="unmeasured time before measuring (e.g. 5s) [default 0]"
    )
    run.add_argument(
        "--connections", type=int, default=1, help="HTTP/2 connections per target (one pins one pod) [default 1]"
    )
    run.add_argument("-t", "--timeout", type=parse_duration, default=20.0, help="deadline of each call [default 20s]")
    run.add_argument("-m", "--metadata", help='metadata as a JSON object, e.g. \'{"x-request-id": "load"}\'')
    run.add_argument(
        "--engine",
        choices=("aio", "threads"),
        default="aio",
        help="aio: asyncio and grpc.aio; threads: grpc's blocking client on threads, about 2-3x less CPU "
        "per call (use it where the generator shares the cores with the service) [default aio]",
    )
    run.add_argument(
        "--watch",
        action="append",
        default=[],
        help="NAME=:PORT (the processes listening on PORT) or NAME=PID: report its CPU time and memory "
        "over the run; repeatable",
    )
    run.add_argument("--seed", type=int, default=0, help="random seed for synthetic data and the call mix [default 0]")
    tls = parser.add_argument_group("TLS (plaintext unless --cacert or --cert is given)")
    tls.add_argument("--cacert", type=Path, help="CA certificate to verify the server")
    tls.add_argument("--cert", type=Path, help="client certificate (mTLS)")
    tls.add_argument("--key", type=Path, help="client private key (mTLS)")
    tls.add_argument("--cname", help="server name to verify instead of the target's host")
    tls.add_argument("--insecure", action="store_true", help="plaintext (ghz's flag; the default without --cacert)")
    out = parser.add_argument_group("output")
    out.add_argument("-O", "--format", choices=FORMATS, default="summary", help="report format [default summary]")
    out.add_argument("--json", action="store_true", help="same as --format json")
    out.add_argument("-o", "--output", type=Path, help="write the report to this file instead of stdout")
    out.add_argument("--quiet", action="store_true", help="no progress line")
    out.add_argument(
        "--record",
        type=Path,
        help="also time every call apart from the report (a client interceptor, its own clock) and write them "
        "as CSV: start_us,latency_us,code (for scripts/percentile_agreement.py)",
    )
    _add_input_arguments(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    loadtest = subparsers.add_parser(
        "loadtest",
        help="drive a service (or the suite) with load and report latency and status codes (ghz-compatible)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_arguments(loadtest, soak=False)
    loadtest.set_defaults(func=run_loadtest)

    soak = subparsers.add_parser(
        "soak",
        help="a fixed rate for a long time: errors, p99 drift first vs last minute, memory of each service",
        description="Runs an open-loop load (--rps, about 70%% of measured capacity) for --duration and checks "
        "that it ends with zero errors, the last window's p99 within --max-p99-drift of the first's, and no "
        "watched process's resident memory grown by more than --max-rss-growth. Exit 1 when a check fails.",
    )
    _add_run_arguments(soak, soak=True)
    soak.add_argument("--window", type=parse_duration, default=60.0, help="window for the p99 drift [default 1m]")
    soak.add_argument(
        "--max-p99-drift", type=float, default=0.20, help="allowed p99 growth, last vs first window [default 0.20]"
    )
    soak.add_argument(
        "--max-rss-growth", type=float, default=0.10, help="allowed memory growth per service [default 0.10]"
    )
    soak.set_defaults(func=run_soak)


# Building the run ------------------------------------------------------------------


def _tls(args: argparse.Namespace) -> TLS:
    from .engine import TLS

    read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
    tls = TLS(cacert=read(args.cacert), cert=read(args.cert), key=read(args.key), server_name=args.cname)
    if (args.cert is None) != (args.key is None):
        raise KinshipError("--cert and --key go together (a client certificate and its key)")
    return tls


def _sync_channel(target: str, tls: TLS) -> grpc.Channel:
    import grpc

    if tls.enabled:
        options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(tls.cacert, tls.key, tls.cert), options=options)
    return grpc.insecure_channel(target)


def _first_collection(channel: grpc.Channel) -> tuple[str, int] | None:
    import grpc

    from kinship.v1 import indexer_pb2, indexer_pb2_grpc

    try:
        reply = indexer_pb2_grpc.IndexerStub(channel).ListCollections(indexer_pb2.ListCollectionsRequest(), timeout=10)
    except grpc.RpcError:
        return None
    # The largest collection: the gallery a load test means, not a leftover.
    collections = sorted(reply.collections, key=lambda c: -c.record_count)
    return (collections[0].model_id, collections[0].dimension) if collections else None


def _input_options(source: dict[str, Any]):
    from . import inputs

    size = str(source.get("image_size") or "640x480").lower().split("x")
    if len(size) != 2 or not all(part.isdigit() for part in size):
        raise KinshipError(f"--image-size {source.get('image_size')!r} must be WIDTHxHEIGHT, e.g. 640x480")
    path = lambda key: Path(source[key]).expanduser() if source.get(key) else None  # noqa: E731
    return inputs.InputOptions(
        data=source.get("data") if not isinstance(source.get("data"), dict | list) else json.dumps(source["data"]),
        data_file=path("data_file"),
        images=path("images"),
        families=path("families"),
        model_id=source.get("model_id"),
        dimension=source.get("dimension"),
        image_size=(int(size[0]), int(size[1])),
        batch=int(source.get("batch") or 1),
        top_k=int(source.get("top_k") or 10),
        relatives=int(source.get("relatives") or 1),
        seed=int(source.get("seed") or 0),
    )


def _plan(call: str, target: str, source: dict[str, Any], tls: TLS, weight: float = 1.0) -> CallPlan:
    from . import inputs, targets
    from .engine import CallPlan

    with _sync_channel(target, tls) as channel:
        method = targets.resolve(call, channel)
        model_info = None
        if method.full_name in ("kinship.v1.Indexer/Search", "kinship.v1.Indexer/Upsert") and not (
            source.get("model_id") and source.get("dimension")
        ):
            model_info = _first_collection(channel)
        requests = inputs.build_requests(method, _input_options(source), model_info)
    return CallPlan(name=method.full_name, target=target, path=method.path, requests=requests, weight=weight)


def load_scenario(path: Path, default_target: str | None, tls: TLS) -> list[CallPlan]:
    """A scenario file: `target` (optional) and `[[calls]]` each with `call`, `weight` and input keys.

    Input keys are the flags' names (`images`, `families`, `data`, `data_file`, `model_id`,
    `batch`, `top_k`, `relatives` ...); `target` and paths may use $ENVIRONMENT variables.
    """
    text = path.read_text()
    try:
        spec = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KinshipError(
            f"--scenario {path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}"
        ) from exc
    calls = spec.get("calls") or []
    if not calls:
        raise KinshipError(f'--scenario {path} lists no [[calls]] (each with call = "SERVICE/METHOD")')
    base = path.parent
    plans = []
    for index, item in enumerate(calls):
        target = os.path.expandvars(item.get("target") or spec.get("target") or default_target or "") or None
        if not target or "call" not in item:
            raise KinshipError(f"--scenario {path}: calls[{index}] needs `call` and a `target` (or a default target)")
        source = dict(item)
        for key in ("images", "families", "data_file"):
            if source.get(key):
                # $VARIABLES expand (a data set's place differs between machines); relative paths are the file's.
                source[key] = str((base / Path(os.path.expandvars(source[key])).expanduser()).resolve())
        plans.append(_plan(item["call"], target, source, tls, float(item.get("weight", 1.0))))
    return plans


def build(args: argparse.Namespace) -> tuple[list[CallPlan], RunOptions]:
    from .engine import RunOptions

    tls = _tls(args)
    if args.scenario:
        plans = load_scenario(args.scenario, args.target, tls)
    else:
        if not args.target:
            raise KinshipError("give the service as HOST:PORT, e.g. kinship loadtest 127.0.0.1:50051 --call ...")
        plans = [_plan(args.call, args.target, vars(args), tls)]
    metadata: tuple[tuple[str, str], ...] = ()
    if args.metadata:
        try:
            metadata = tuple((str(k).lower(), str(v)) for k, v in json.loads(args.metadata).items())
        except (json.JSONDecodeError, AttributeError) as exc:
            raise KinshipError(f"--metadata must be a JSON object of strings: {exc}") from exc
    duration = args.duration if args.duration is not None else (None if args.total else 10.0)
    if args.rps is not None and args.rps <= 0:
        raise KinshipError("--rps must be greater than 0")
    concurrency = args.concurrency or (1000 if args.rps else 50)
    options = RunOptions(
        concurrency=concurrency,
        rps=args.rps,
        duration_s=duration,
        total=args.total,
        warmup_s=args.warmup,
        connections=args.connections,
        timeout_s=args.timeout,
        metadata=metadata,
        tls=tls,
        window_s=getattr(args, "window", None),
        seed=args.seed,
        progress=not args.quiet,
        record_timings=args.record is not None,
    )
    return plans, options


def _run(plans: list[CallPlan], options: RunOptions, engine: str = "aio") -> RunResult:
    from kinship.runtime.collector import freeze_startup_objects

    from .engine import LoadRun

    # The prepared requests (photos, vectors) live through the run: a full collection that
    # walked them would stall the generator, and the stall would read as the server's latency.
    freeze_startup_objects()
    if engine == "threads":
        from .engine_threads import ThreadedLoadRun

        threaded = ThreadedLoadRun(plans, options)
        previous = {sig: signal.signal(sig, lambda *_: threaded.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return threaded.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def main() -> RunResult:
        run = LoadRun(plans, options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, run.stop)  # Ctrl-C: stop sending, report what was measured
        return await run.run()

    return asyncio.run(main())


def _options_dict(args: argparse.Namespace, plans: list[CallPlan], options: RunOptions) -> dict[str, Any]:
    out = {k: v for k, v in asdict(options).items() if k not in ("tls", "metadata")}
    out.update(
        engine=args.engine,
        host=args.target,
        call=args.call,
        scenario=str(args.scenario) if args.scenario else None,
        calls=[{"call": p.name, "target": p.target, "weight": p.weight, "requests": len(p.requests)} for p in plans],
        insecure=not options.tls.enabled,
    )
    return out


def _write_timings(result: RunResult, path: Path | None) -> None:
    if path is None or result.timings is None:
        return
    with path.open("w") as handle:
        handle.write("start_us,latency_us,code\n")
        for start, latency, code in result.timings:
            handle.write(f"{start:.1f},{latency:.1f},{code}\n")


def _emit(text: str, output: Path | None) -> None:
    if output:
        output.write_text(text if text.endswith("\n") else text + "\n")
        print(f"kinship: report written to {output}", file=sys.stderr)
    else:
        print(text)


def _watched(args: argparse.Namespace) -> dict[str, list[int]]:
    from . import processes

    return dict(processes.resolve_watch(spec) for spec in args.watch)


def _usage(watched: dict[str, list[int]]) -> dict[str, dict[str, float | None]]:
    import resource

    from . import processes

    usage = {
        name: {"cpu_s": processes.total_cpu(pids), "rss": processes.total_rss(pids)} for name, pids in watched.items()
    }
    own = resource.getrusage(resource.RUSAGE_SELF)
    usage["loadtest"] = {"cpu_s": own.ru_utime + own.ru_stime, "rss": None}
    return usage


def resource_report(before: dict, after: dict, result: RunResult) -> dict[str, dict[str, float | None]]:
    """CPU seconds and memory of each watched process (and of the load generator) over the run."""
    out = {}
    for name, start in before.items():
        end = after.get(name, {})
        cpu = end.get("cpu_s") - start["cpu_s"] if end.get("cpu_s") is not None and start["cpu_s"] is not None else None
        out[name] = {
            "cpu_seconds": round(cpu, 2) if cpu is not None else None,
            "cores_used": round(cpu / result.elapsed_s, 3) if cpu is not None and result.elapsed_s else None,
            "calls_per_cpu_second": round(result.recorder.count / cpu, 1) if cpu else None,
            "rss_start": start.get("rss"),
            "rss_end": end.get("rss"),
        }
    return out


def run_loadtest(args: argparse.Namespace) -> int:
    from . import report

    try:
        watched = _watched(args)
    except ValueError as exc:
        print(f"kinship loadtest: {exc}", file=sys.stderr)
        return 2
    try:
        plans, options = build(args)
        before: dict = {}
        # CPU and memory count from the end of the warm-up, as the calls do.
        timer = threading.Timer(args.warmup, lambda: before.update(_usage(watched)))
        timer.daemon = True
        timer.start()
        result = _run(plans, options, args.engine)
        timer.cancel()
        usage = resource_report(before or _usage(watched), _usage(watched), result)
    except KinshipError as exc:
        print(f"kinship loadtest: {exc.message if hasattr(exc, 'message') else exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"kinship loadtest: {exc}", file=sys.stderr)
        return 1
    _write_timings(result, args.record)
    fmt = "json" if args.json else args.format
    target = args.target or str(args.scenario)
    if fmt == "json":
        body = report.to_json_dict(result, _options_dict(args, plans, options))
        body["kinship"]["processes"] = usage
        text = json.dumps(body, indent=2)
    else:
        text = report.render(result, fmt, target, _options_dict(args, plans, options))
        if fmt == "summary" and args.watch:
            text += "\nProcesses (CPU over the run):\n" + "".join(
                f"  {name}: {u['cpu_seconds']} CPU s ({u['cores_used']} cores), {u['calls_per_cpu_second']} calls per CPU s\n"
                for name, u in usage.items()
            )
    _emit(text, args.output)
    return 0


# Soak --------------------------------------------------------------------------------


def soak_verdict(
    result: RunResult, memory: dict[str, dict[str, int | None]], max_p99_drift: float, max_rss_growth: float
) -> dict[str, Any]:
    """The soak's checks: zero errors, p99 drift of the last full window vs the first, memory growth."""
    rec = result.recorder
    windows = [w for w in rec.windows if w.stats.count]
    # The last window may be a partial one; compare full windows where there are two.
    if len(windows) > 2 and rec.window_seconds and windows[-1].start_s + rec.window_seconds > result.elapsed_s + 1e-6:
        windows = windows[:-1]
    first_p99 = windows[0].stats.percentile_us(99) / 1000 if windows else 0.0
    last_p99 = windows[-1].stats.percentile_us(99) / 1000 if windows else 0.0
    drift = (last_p99 - first_p99) / first_p99 if first_p99 else 0.0
    growth = {}
    for name, values in memory.items():
        start, end = values.get("start"), values.get("end")
        growth[name] = (end - start) / start if start and end else None
    checks = {
        "zero_errors": rec.errors == 0,
        "p99_drift_within": drift <= max_p99_drift,
        "memory_growth_within": all(g is not None and g <= max_rss_growth for g in growth.values()),
    }
    return {
        "errors": rec.errors,
        "first_window_p99_ms": round(first_p99, 3),
        "last_window_p99_ms": round(last_p99, 3),
        "p99_drift": round(drift, 4),
        "memory_bytes": memory,
        "memory_growth": {k: (round(v, 4) if v is not None else None) for k, v in growth.items()},
        "limits": {"max_p99_drift": max_p99_drift, "max_rss_growth": max_rss_growth},
        "checks": checks,
        "passed": all(checks.values()),
    }


def run_soak(args: argparse.Namespace) -> int:
    from . import processes, report

    try:
        watched = _watched(args)
    except ValueError as exc:
        print(f"kinship soak: {exc}", file=sys.stderr)
        return 2
    memory: dict[str, dict[str, int | None]] = {name: {"start": None} for name in watched}

    trace: dict[str, list[int | None]] = {name: [] for name in watched}  # one sample per window
    finished = threading.Event()

    def sample_memory() -> None:
        # Memory "at start" is read when the warm-up ends: growth while caches fill is not a leak.
        if finished.wait(args.warmup):
            return
        for name, pids in watched.items():
            memory[name]["start"] = processes.total_rss(pids)
        while not finished.wait(args.window):
            for name, pids in watched.items():
                trace[name].append(processes.total_rss(pids))

    try:
        plans, options = build(args)
        started = time.monotonic()
        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        result = _run(plans, options, args.engine)
        finished.set()
    except KinshipError as exc:
        print(f"kinship soak: {exc.message if hasattr(exc, 'message') else exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"kinship soak: {exc}", file=sys.stderr)
        return 1
    _write_timings(result, args.record)
    for name, pids in watched.items():
        memory[name]["end"] = processes.total_rss(pids)
    verdict = soak_verdict(result, memory, args.max_p99_drift, args.max_rss_growth)
    verdict["memory_bytes_per_window"] = trace
    fmt = "json" if args.json else args.format
    if fmt == "json":
        body = report.to_json_dict(result, _options_dict(args, plans, options))
        body["soak"] = verdict
        text = json.dumps(body, indent=2)
    else:
        text = report.render(result, fmt, args.target or str(args.scenario), _options_dict(args, plans, options))
        if fmt == "summary":
            lines = [f"\nSoak ({time.monotonic() - started:.0f} s, window {args.window:g} s):"]
            lines.append(f"  errors:           {verdict['errors']}")
            lines.append(
                f"  p99 first window: {verdict['first_window_p99_ms']:.2f} ms; last: {verdict['last_window_p99_ms']:.2f} ms "
                f"(drift {verdict['p99_drift']:+.1%}, limit +{args.max_p99_drift:.0%})"
            )
            for name, values in memory.items():
                start, end, growth = values["start"], values["end"], verdict["memory_growth"][name]
                shown = "gone" if growth is None else f"{growth:+.1%}"
                lines.append(
                    f"  memory {name}: {(start or 0) / 2**20:.1f} MiB -> {(end or 0) / 2**20:.1f} MiB ({shown}, limit +{args.max_rss_growth:.0%})"
                )
            lines.append(f"  verdict: {'PASS' if verdict['passed'] else 'FAIL'}")
            text += "\n".join(lines)
    _emit(text, args.output)
    return 0 if verdict["passed"] else 1
