"""`kinship serve NAME --processes N`: N server processes of one service on one port.

Python runs one thread of Python at a time per process, so a service whose calls are
Python-bound uses one core however many threads it has. With `--processes N` the
command starts N copies of the service, each binding the same port with SO_REUSEPORT
(the kernel spreads new connections among them), and supervises them: SIGTERM or
Ctrl-C reaches every copy, which drains as a single server does, and if one copy dies
the others are stopped too; if the supervisor dies, SIGKILL included, the kernel sends
every copy SIGTERM (parent-death signal). Only the first copy serves the metrics and
health-only ports (those are not shared). Whether it pays is measured, not assumed: see
docs/benchmarks.md, "Costs behind the defaults".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from kinship.runtime.processes import die_with_parent

#: Set in each copy: its index (0 is the first). A copy never starts copies of its own.
WORKER_ENV = "KINSHIP_SERVE_PROCESS_INDEX"


def worker_index() -> int | None:
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None and value.isdigit() else None


def supervise(name: str, argv: list[str], processes: int, grace_seconds: float) -> int:
    children: list[subprocess.Popen] = []
    stop = False

    def request_stop(_signum, _frame):
        nonlocal stop
        stop = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    exit_code = 0
    try:
        for index in range(processes):
            env = {**os.environ, WORKER_ENV: str(index)}
            cmd = [sys.executable, "-m", "kinship.cli.main", "serve", name, *argv]
            children.append(
                subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))
            )
        print(
            f"kinship: {name}: {processes} processes (pids {', '.join(str(c.pid) for c in children)})", file=sys.stderr
        )
        while not stop:
            for child in children:
                if child.poll() is not None:
                    print(
                        f"kinship: {name} process {child.pid} exited with {child.returncode}; stopping the others",
                        file=sys.stderr,
                    )
                    exit_code, stop = 1, True
                    break
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds + 5
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code
