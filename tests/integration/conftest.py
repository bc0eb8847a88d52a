"""Integration fixtures: a real Milvus 2.3.5 standalone server for the session.

The server comes from the PyPI package `milvus==2.3.5` (console script
`milvus-server`). It is started once per session on free ports in a temporary
data folder, waited for by connecting with pymilvus, and stopped in teardown.
Where it cannot start the tests that need it fail (they never skip); only a
missing `milvus-server` script skips, and in CI that too is a failure.

Ports: every port that `milvus-server` has a flag for gets a free one; the embedded
etcd ignores `--etcd-port` and would listen on 2379/2380, so it gets a config file
of its own through ETCD_CONFIG_PATH. The metrics/health port (9091) has no flag:
`milvus-server` itself takes the first free port from 9091 up, so only two servers
starting at the same instant could collide there.

Supervision: the launcher dies with the test process that started it, SIGKILL included,
and the `milvus` binary with the launcher (parent-death signal, kinship.runtime.processes):
a killed test run leaves no Milvus behind holding ports and memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kinship.runtime.processes import die_with_parent
from tests.conftest import IN_CI, free_ports

STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 40
# Internal components of the standalone server that each listen on a port of their own.
COMPONENT_PORT_FLAGS = (
    "--proxy-internal-port",
    "--root-coord-port",
    "--query-coord-port",
    "--query-node-port",
    "--index-coord-port",
    "--index-node-port",
    "--data-coord-port",
    "--data-node-port",
)


@dataclass(frozen=True)
class MilvusServer:
    uri: str
    data_dir: Path
    startup_seconds: float


def _milvus_server_script() -> str | None:
    beside_python = Path(sys.executable).parent / "milvus-server"
    return str(beside_python) if beside_python.exists() else shutil.which("milvus-server")


def _log_tail(folder: Path) -> str:
    chunks = []
    for log in [folder / "milvus-server.log", *sorted((folder / "data" / "logs").glob("milvus-std*.log"))]:
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            chunks.append(f"--- last {len(lines)} lines of {log} ---\n" + "\n".join(lines))
    return "\n".join(chunks) or f"(no log files under {folder})"


def _wait_until_serving(process: subprocess.Popen, uri: str, folder: Path) -> None:
    """Connects with pymilvus until it answers; fails with the log tail when it never does."""
    from pymilvus import MilvusClient

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error = "no attempt made"
    attempts = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"milvus-server exited with code {process.returncode} before serving at {uri}\n{_log_tail(folder)}",
                pytrace=False,
            )
        attempts += 1
        try:
            client = MilvusClient(uri=uri, timeout=5)
            client.list_collections(timeout=5)
            client.close()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not up yet"; the last one is reported
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)  # polling interval of a bounded wait, not a timing assumption
    pytest.fail(
        f"Milvus server at {uri} did not answer within {STARTUP_TIMEOUT_S:.0f} s ({attempts} attempts; "
        f"last error: {last_error})\n{_log_tail(folder)}",
        pytrace=False,
    )


def _stop(process: subprocess.Popen) -> None:
    """SIGINT lets milvus-server stop its `milvus` child; the process group catches anything left."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
    # The group is the one this fixture created (start_new_session): only the server's own processes.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# milvus-server probes each port it is given by binding it without SO_REUSEADDR, so right
# after a kill it refuses ports that still hold TIME_WAIT connections of its clients (the
# server, written in Go, binds them fine). This launcher gives the probe SO_REUSEADDR, so a
# killed server restarts at once on the same ports (see docs/milvus-notes.md). Its children
# (the `milvus` binary) get SIGKILL when it dies, however it dies.
_LAUNCHER = """
import signal, socket, subprocess, sys, milvus
from kinship.runtime.processes import die_with_parent
class DiesWithLauncher(subprocess.Popen):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("preexec_fn", die_with_parent(signal.SIGKILL))
        super().__init__(*args, **kwargs)
subprocess.Popen = DiesWithLauncher
def try_bind_port(self, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None
milvus.MilvusServerConfig.try_bind_port = try_bind_port
sys.argv[0] = "milvus-server"
sys.exit(milvus.main())
"""


class MilvusProcess:
    """One milvus-server on fixed free ports and a data folder; it can be killed and started again."""

    def __init__(self, folder: Path):
        self.folder = folder
        proxy_port, etcd_client, etcd_peer, *component_ports = free_ports(3 + len(COMPONENT_PORT_FLAGS))
        etcd_config = folder / "embed-etcd.yaml"
        etcd_config.write_text(
            f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
            f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
            f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{etcd_peer}\n"
        )
        self._arguments = [
            "--data",
            str(folder / "data"),
            "--proxy-port",
            str(proxy_port),
            "--etcd-port",
            str(etcd_client),
        ]
        for flag, port in zip(COMPONENT_PORT_FLAGS, component_ports, strict=True):
            self._arguments += [flag, str(port)]
        self._env = {**os.environ, "ETCD_USE_EMBED": "true", "ETCD_CONFIG_PATH": str(etcd_config)}
        self.uri = f"http://127.0.0.1:{proxy_port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        """Starts the server and waits until it answers; returns the seconds that took."""
        started = time.monotonic()
        with open(self.folder / "milvus-server.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, *self._arguments],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
                # The launcher dies with this process; the milvus binary with the launcher.
                preexec_fn=die_with_parent(signal.SIGKILL),
                cwd=self.folder,
            )
        _wait_until_serving(self.process, self.uri, self.folder)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to the server's whole process group (the group this object created): a crash."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


def require_milvus_server() -> None:
    """Skips (fails in CI) when the milvus package's server is not installed."""
    if _milvus_server_script() is None:
        message = "milvus-server not found: install the test extra (pip install -e '.[test]', package milvus==2.3.5)"
        if IN_CI:
            pytest.fail(message + "; CI must have it", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    require_milvus_server()
    server = MilvusProcess(tmp_path_factory.mktemp("milvus-server"))
    try:
        seconds = server.start()
        print(f"\nMilvus 2.3.5 server at {server.uri} answered after {seconds:.1f} s", file=sys.stderr)
        yield MilvusServer(uri=server.uri, data_dir=server.folder, startup_seconds=seconds)
    finally:
        server.stop()


@pytest.fixture
def dead_milvus_uri() -> str:
    """A Milvus URI where nothing listens (the port was free a moment ago)."""
    (port,) = free_ports(1)
    return f"http://127.0.0.1:{port}"
