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


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    script = _milvus_server_script()
    if script is None:
        message = "milvus-server not found: install the test extra (pip install -e '.[test]', package milvus==2.3.5)"
        if IN_CI:
            pytest.fail(message + "; CI must have it", pytrace=False)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("milvus-server")
    proxy_port, etcd_client, etcd_peer, *component_ports = free_ports(3 + len(COMPONENT_PORT_FLAGS))
    etcd_config = folder / "embed-etcd.yaml"
    etcd_config.write_text(
        f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
        f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
        f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{etcd_peer}\n"
    )
    command = [script, "--data", str(folder / "data"), "--proxy-port", str(proxy_port), "--etcd-port", str(etcd_client)]
    for flag, port in zip(COMPONENT_PORT_FLAGS, component_ports, strict=True):
        command += [flag, str(port)]
    env = {**os.environ, "ETCD_USE_EMBED": "true", "ETCD_CONFIG_PATH": str(etcd_config)}
    uri = f"http://127.0.0.1:{proxy_port}"
    started = time.monotonic()
    with open(folder / "milvus-server.log", "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=folder
        )
    try:
        _wait_until_serving(process, uri, folder)
        server = MilvusServer(uri=uri, data_dir=folder, startup_seconds=time.monotonic() - started)
        print(f"\nMilvus 2.3.5 server at {uri} answered after {server.startup_seconds:.1f} s", file=sys.stderr)
        yield server
    finally:
        _stop(process)


@pytest.fixture
def dead_milvus_uri() -> str:
    """A Milvus URI where nothing listens (the port was free a moment ago)."""
    (port,) = free_ports(1)
    return f"http://127.0.0.1:{port}"
