"""`kinship serve all`'s terminal stays readable: the services log to files, this shows their warnings.

Each service started by `serve all` writes its log (JSON lines by default, as in a deployment;
or the console format) to `<log dir>/<service>.log`. The terminal keeps the supervisor's own
summary (started, SERVING, the sample gallery's example commands) and `Relay` adds each
warning or error of a service as one readable line, `kinship: indexer warning: <event> (k=v, ...)`,
so nothing alarming is hidden and the access log of every call is not in the way.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import IO

#: Levels shown on the terminal.
SHOWN_LEVELS = ("warning", "error", "critical", "exception")
#: Keys of a JSON log line that the one-line form leaves out (the line already says them).
_LEFT_OUT = {"event", "level", "timestamp", "service", "logger"}
_MAX_LINE = 400


def log_path(log_dir: Path, service: str) -> Path:
    return log_dir / f"{service}.log"


def open_log(log_dir: Path, service: str) -> IO[bytes]:
    """The service's log file, appended to (a restart keeps the earlier runs' lines)."""
    return open(log_path(log_dir, service), "ab")  # noqa: SIM115 - handed to the child process, closed after Popen


def parse(line: str, *, warnings: bool = True) -> tuple[str, str] | None:
    """(level, text) of a log line at a shown level (errors only unless `warnings`); None for any other line."""
    levels = SHOWN_LEVELS if warnings else SHOWN_LEVELS[1:]
    text = line.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        level = str(record.get("level", "")).lower()
        if level not in levels:
            return None
        exception = str(record.pop("exception", "") or "")
        details = ", ".join(f"{k}={v}" for k, v in record.items() if k not in _LEFT_OUT)
        out = str(record.get("event", ""))
        if details:
            out += f" ({details})"
        if exception:
            out += f" [{exception.strip().splitlines()[-1]}]"
        return level, out
    # The console format ("... [warning  ] event k=v") and pymilvus's own ("... [WARNING][func]: ...").
    lowered = text.lower()
    for level in levels:
        if f"[{level}" in lowered:
            return level, text
    return None


def readable(service: str, line: str, *, warnings: bool = True) -> str | None:
    """One line for the terminal from a service's log line at a shown level; None for any other line."""
    parsed = parse(line, warnings=warnings)
    return _line(service, *parsed) if parsed else None


def _line(services: str, level: str, text: str) -> str:
    out = f"kinship: {services} {level}: {text}"
    return out if len(out) <= _MAX_LINE else out[: _MAX_LINE - 3] + "..."


def print_tail(path: Path, lines: int = 20) -> None:
    """The last lines of a service's log, for when it failed to start or stopped."""
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return
    for line in tail:
        print(f"  | {line}", file=sys.stderr)
    sys.stderr.flush()


class Relay:
    """Follows the services' log files from their current end and prints the shown lines on stderr.

    Until `ready()` warnings are held back, then shown once each, with the services that logged them
    (while the three start, each warns alike that it serves plaintext without authentication), and
    the ranker's "service not ready" of the start-up, over by then, is dropped. Errors show at once.
    """

    def __init__(self, interval: float = 0.25):
        self._interval = interval
        self._ready = False
        self._held: dict[tuple[str, str], list[str]] = {}
        self._files: list[tuple[str, Path, int]] = []
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # one pass at a time (the thread's, ready()'s, stop()'s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kinship-log-relay", daemon=True)
        self._started = False

    def ready(self) -> None:
        """Shows the warnings of the start-up, once each, and from now on every warning as it comes."""
        self._pass()
        with self._lock:
            held, self._held, self._ready = self._held, {}, True
        for (level, text), services in held.items():
            if not text.startswith("service not ready"):
                print(_line(", ".join(services), level, text), file=sys.stderr, flush=True)

    def follow(self, service: str, path: Path) -> None:
        offset = path.stat().st_size if path.exists() else 0
        with self._lock:
            self._files.append((service, path, offset))
        if not self._started:
            self._started = True
            self._thread.start()

    def _show(self, service: str, raw: str) -> None:
        parsed = parse(raw)
        if parsed is None:
            return
        with self._lock:
            if not self._ready and parsed[0] == "warning":
                services = self._held.setdefault(parsed, [])
                if service not in services:
                    services.append(service)
                return
        print(_line(service, *parsed), file=sys.stderr, flush=True)

    def _pass(self) -> None:
        with self._reading:
            self._read_once()

    def _read_once(self) -> None:
        with self._lock:
            files = list(self._files)
        updated = {}
        for service, path, offset in files:
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next pass
            for raw in complete.decode("utf-8", errors="replace").splitlines():
                self._show(service, raw)
            updated[(service, path)] = offset + len(complete)
        with self._lock:
            self._files = [(s, p, updated.get((s, p), o)) for s, p, o in self._files]

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._pass()

    def stop(self) -> None:
        """Shows what the services wrote up to now (their last words when stopping), then stops."""
        self._stop.set()
        if self._started:
            self._thread.join(5)
        self._pass()
