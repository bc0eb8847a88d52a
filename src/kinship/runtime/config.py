"""Settings from flags and environment variables, validated once at start-up.

Each service declares its settings as a list of `Setting`. A value comes from the
command-line flag if given, else from the environment variable, else the default.
Every problem is reported at once, each naming the flag and the variable, so that a
bad deployment fails at start with a message that says what to fix.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One setting: attribute name, flag, environment variable, parser and check."""

    name: str
    env: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None when fine
    choices: Sequence[str] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


# Parsers and checks shared by the services --------------------------------------


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def port_check(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"must be a TCP port 0-65535 (0 picks a free one), got {value}"


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more, got {value}"


def address_check(value: str) -> str | None:
    # host:port, dns:///host:port, unix:path ... grpc accepts many forms; catch the common slip.
    if not value:
        return "must not be empty"
    if value.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        return f"must look like host:port (for example localhost:50051), got {value!r}"
    return None


def default_data_dir() -> Path:
    """Per-user data directory: $XDG_DATA_HOME/kinship-search or ~/.local/share/kinship-search."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kinship-search"


def artifacts_dir_setting() -> Setting:
    """Where trained kinship artifacts live (read by the embedder and the ranker; see kinship.artifacts).

    The default is `<data dir>/artifacts` (KINSHIP_DATA_DIR, else the per-user data
    directory), where `kinship train` writes; a deployment mounts one read-only folder
    into both services.
    """
    data_dir = Path(os.environ.get("KINSHIP_DATA_DIR") or default_data_dir()).expanduser()
    return Setting(
        "artifacts_dir",
        "KINSHIP_ARTIFACTS_DIR",
        data_dir / "artifacts",
        "folder of trained kinship artifacts (kinship train writes <data-dir>/artifacts); the artifact named "
        "in its ACTIVE file is loaded at start, and without one the suite runs uncalibrated and says so",
        Path,
    )


def server_settings(service: str, default_port: int) -> list[Setting]:
    """The runtime's settings of every gRPC server of the suite; `service` prefixes the port variables.

    The security settings build on these (`kinship.security.settings.server_settings` gives both).
    """
    upper = service.upper()
    return [
        Setting("host", "KINSHIP_HOST", "127.0.0.1", "address to listen on ([::] or 0.0.0.0 for all)"),
        Setting("port", f"KINSHIP_{upper}_PORT", default_port, f"gRPC port of the {service}", int, port_check),
        Setting(
            "max_message_mb",
            "KINSHIP_MAX_MESSAGE_MB",
            16.0,
            "largest gRPC message accepted or sent, in MiB (an image of 10 MiB needs more than 10)",
            float,
            positive,
        ),
        Setting(
            "stream_window_mb",
            "KINSHIP_STREAM_WINDOW_MB",
            4.0,
            "most bytes, in MiB, a caller may send on one call ahead of what the service has read (the "
            "HTTP/2 stream window, fixed: with gRPC's own window growth a standalone probe buffered about "
            "64 MiB per stream); 0 leaves gRPC's automatic growth on",
            float,
            lambda v: None if v >= 0 else f"must be 0 or more, got {v}",
        ),
        Setting(
            "grace_seconds",
            "KINSHIP_GRACE_SECONDS",
            10.0,
            "on SIGTERM, how long in-flight calls may finish before the server stops",
            float,
            non_negative,
        ),
        Setting(
            "health_interval_seconds",
            "KINSHIP_HEALTH_INTERVAL_SECONDS",
            5.0,
            "how often readiness is re-checked (dependencies reachable, model loaded)",
            float,
            positive,
        ),
        Setting(
            "metrics_port",
            f"KINSHIP_{upper}_METRICS_PORT",
            -1,
            "port of the Prometheus /metrics endpoint; -1 disables it, 0 picks a free one",
            int,
            lambda v: None if v == -1 else port_check(v),
        ),
        Setting(
            "log_level",
            "KINSHIP_LOG_LEVEL",
            "info",
            "log level",
            str.lower,
            choices=("debug", "info", "warning", "error"),
        ),
        Setting("log_format", "KINSHIP_LOG_FORMAT", "json", "log format", str.lower, choices=("json", "console")),
        *load_settings(service),
        *connection_settings(),
    ]


def connection_settings() -> list[Setting]:
    """How long a client connection lives and how it is kept alive (gRPC balancing on a cluster).

    Capping connection age makes clients re-resolve DNS and reconnect, so pods added by a
    scale-up get traffic; keepalive pings find dead peers. A server tolerates pings every
    `min_ping_interval_seconds`; the suite's clients ping every `keepalive_seconds`, which
    must not be shorter, or the server answers GOAWAY too_many_pings.
    """
    return [
        Setting(
            "max_connection_age_seconds",
            "KINSHIP_MAX_CONNECTION_AGE_SECONDS",
            60.0,
            "a client connection is closed (GOAWAY) after this age so clients re-resolve and reach new replicas",
            float,
            positive,
        ),
        Setting(
            "max_connection_age_grace_seconds",
            "KINSHIP_MAX_CONNECTION_AGE_GRACE_SECONDS",
            3600.0,
            "calls in flight on a connection past its age get this long to finish (new calls go to a new "
            "connection at once, so a long grace costs balancing nothing; it must outlast the longest stream, "
            "such as a bulk enrolment)",
            float,
            non_negative,
        ),
        Setting(
            "keepalive_seconds",
            "KINSHIP_KEEPALIVE_SECONDS",
            30.0,
            "interval of keepalive pings on idle connections, the server's to its clients and the ranker's to "
            "its dependencies (at least the peer's --min-ping-interval-seconds)",
            float,
            positive,
        ),
        Setting(
            "min_ping_interval_seconds",
            "KINSHIP_MIN_PING_INTERVAL_SECONDS",
            10.0,
            "shortest interval between a client's pings that the server tolerates (pymilvus and many clients "
            "ping every 10 s); faster pings get GOAWAY too_many_pings",
            float,
            positive,
        ),
    ]


def client_settings() -> list[Setting]:
    """Settings of a service that calls the others over gRPC (the ranker)."""
    return [
        Setting(
            "dns_min_refresh_seconds",
            "KINSHIP_DNS_MIN_REFRESH_SECONDS",
            10.0,
            "least time between two DNS resolutions of a dns:/// address (re-resolved when a connection closes)",
            float,
            positive,
        ),
    ]


def _fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be between 0 and 1, got {value}"


def load_settings(service: str) -> list[Setting]:
    """Admission control, the health-only port, access-log sampling and server processes (see runtime.admission)."""
    upper = service.upper()
    return [
        Setting(
            "max_concurrent_calls",
            f"KINSHIP_{upper}_MAX_CONCURRENT_CALLS",
            0,
            "calls at work at once; the next is refused at once with RESOURCE_EXHAUSTED and a retry hint "
            "(0: the service's own bound, the embedder's 2 x workers, else 64)",
            int,
            non_negative,
        ),
        Setting(
            "health_port",
            f"KINSHIP_{upper}_HEALTH_PORT",
            -1,
            "plaintext port serving only grpc.health.v1 from its own threads (for probes, also when TLS is on); "
            "-1 disables it, 0 picks a free one",
            int,
            lambda v: None if v == -1 else port_check(v),
        ),
        Setting(
            "access_log_sample",
            "KINSHIP_ACCESS_LOG_SAMPLE",
            1.0,
            "fraction of successful calls written to the log (failed calls always are); 0.01 at high call rates",
            float,
            _fraction,
        ),
        Setting(
            "malloc_arena_max",
            f"KINSHIP_{upper}_MALLOC_ARENA_MAX",
            # The indexer's thread pools grow with load and glibc gives each busy thread an arena
            # that keeps its freed memory: capped, its resident memory no longer steps up (allocator.py).
            2 if service == "indexer" else 0,
            "glibc malloc arenas this process may use (as MALLOC_ARENA_MAX); 0: glibc's own, 8 per core",
            int,
            non_negative,
        ),
        Setting(
            "switch_interval_ms",
            "KINSHIP_SWITCH_INTERVAL_MS",
            0.0,
            "how long a Python thread may hold the GIL while another waits (sys.setswitchinterval); shorter lets "
            "the event loop answer (refusals, health) sooner while worker threads run Python; 0: Python's 5 ms",
            float,
            non_negative,
        ),
        Setting(
            "event_loop",
            "KINSHIP_EVENT_LOOP",
            "uvloop",
            "the event loop the server runs on: uvloop (libuv; less CPU per call) or asyncio (Python's own)",
            str.lower,
            choices=("uvloop", "asyncio"),
        ),
        Setting(
            "processes",
            f"KINSHIP_{upper}_PROCESSES",
            1,
            "server processes sharing the port (SO_REUSEPORT); the kernel spreads connections among them",
            int,
            positive,
        ),
    ]


def add_arguments(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    """Adds one flag per setting; flags default to None so the environment can fill in."""
    for s in settings:
        extra = f" [env {s.env}; default {s.default}]"
        kwargs: dict[str, Any] = {"dest": s.name, "default": None, "help": s.help + extra}
        if s.choices:
            kwargs["choices"] = list(s.choices)
        if s.parse is parse_bool:
            # `--plaintext` alone means true; `--plaintext false` still works.
            kwargs.update(nargs="?", const="true", metavar="true|false")
        parser.add_argument(s.flag, **kwargs)


def resolve(
    settings: Sequence[Setting],
    flags: Mapping[str, Any] | argparse.Namespace | None = None,
    env: Mapping[str, str] | None = None,
) -> SimpleNamespace:
    """Combines flags, environment and defaults; raises ConfigError listing every bad setting."""
    flag_values = vars(flags) if isinstance(flags, argparse.Namespace) else dict(flags or {})
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}
    problems: list[str] = []
    for s in settings:
        raw = flag_values.get(s.name)
        origin = f"{s.flag}"
        if raw is None and s.env in environ and environ[s.env] != "":
            raw, origin = environ[s.env], f"${s.env}"
        if raw is None:
            values[s.name] = s.default
            continue
        try:
            value = s.parse(raw) if isinstance(raw, str) else raw
        except (TypeError, ValueError) as exc:
            problems.append(f"{origin}={raw!r} is not valid: {exc} ({s.help})")
            continue
        if s.choices and value not in s.choices:
            problems.append(f"{origin}={raw!r} must be one of {', '.join(s.choices)}")
            continue
        problem = s.check(value) if s.check else None
        if problem:
            problems.append(f"{origin} {problem} (flag {s.flag}, env {s.env})")
            continue
        values[s.name] = value
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return SimpleNamespace(**values)
