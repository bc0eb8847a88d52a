"""`kinship serve` as a user runs it, with real processes: the services die with `serve all`
(SIGKILL too), and a taken port or a locked data folder is refused with one line naming the
holder, exit code 2, instead of a traceback or a SERVING that came from someone else."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kinship.cli.serve import wait_serving
from kinship.runtime import processes
from tests.conftest import free_ports
from tests.e2e.test_suite_end_to_end import serve_all

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal and /proc: Linux")

GONE_WITHIN_S = 15.0


def _kinship(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kinship.cli.main", *args], capture_output=True, text=True, timeout=120
    )


def _processes_naming(folder: Path) -> list[int]:
    """Pids of live processes whose command line names `folder` (the services get paths in it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmdline and processes.alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _listener(port: int) -> subprocess.Popen:
    """A process that holds `port` (listening), as a stale server would."""
    code = "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    code += "print('ready', flush=True); time.sleep(600)"
    process = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_sigkill_of_serve_all_leaves_no_service_and_no_bound_port(tmp_path: Path) -> None:
    with serve_all(tmp_path) as running:
        ports = [int(address.rsplit(":", 1)[1]) for address in running["addresses"].values()]
        services = sorted({pid for port in ports for pid in processes.pids_listening_on(port)})
        supervisor = running["process"]
        assert len(services) == 3 and supervisor.pid not in services
        assert all(processes.parent_of(pid) == supervisor.pid for pid in services)
        supervisor.kill()  # SIGKILL: serve all cannot stop anything itself
        supervisor.wait(30)
        deadline = time.monotonic() + GONE_WITHIN_S
        while time.monotonic() < deadline and (
            _processes_naming(tmp_path) or any(processes.port_taken("127.0.0.1", port) for port in ports)
        ):
            time.sleep(0.2)
        left = _processes_naming(tmp_path)
        for pid in left:  # this test's own services: not left behind for the next tests
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert left == [], "service processes outlived serve all"
        assert [port for port in ports if processes.port_taken("127.0.0.1", port)] == []


def test_serve_refuses_a_taken_port_naming_its_holder(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    holder = _listener(port)
    try:
        result = _kinship("serve", "ranker", "--port", str(port), "--artifacts-dir", str(tmp_path))
        assert result.returncode == 2
        line = _one_line(result)
        assert line.startswith(f"kinship serve ranker: port {port} on 127.0.0.1 is taken by pid {holder.pid} (python")
        assert f"kill {holder.pid}" in line and "--port" in line
    finally:
        holder.kill()
        holder.wait(10)


@pytest.fixture
def stale_indexer(tmp_path: Path):
    """An indexer left running on a data folder (holding its port and the Milvus Lite lock)."""
    (port,) = free_ports(1)
    cmd = [sys.executable, "-m", "kinship.cli.main", "serve", "indexer", "--port", str(port)]
    cmd += ["--data-dir", str(tmp_path), "--log-level", "warning"]
    process = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        assert wait_serving(f"127.0.0.1:{port}", time.monotonic() + 120, process)
        yield process, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_serve_refuses_a_locked_data_folder_naming_its_holder(stale_indexer, tmp_path: Path) -> None:
    process, _ = stale_indexer
    (other_port,) = free_ports(1)
    result = _kinship("serve", "indexer", "--port", str(other_port), "--data-dir", str(tmp_path))
    assert result.returncode == 2
    line = _one_line(result)
    assert line.startswith(f"kinship serve indexer: refused to start: the data folder {tmp_path} is in use")
    assert f"locked by pid {process.pid} (kinship serve indexer --port" in line


def test_a_second_serve_all_names_the_stale_pids_instead_of_serving(stale_indexer, tmp_path: Path) -> None:
    indexer, indexer_port = stale_indexer
    embedder_port, ranker_port = free_ports(2)
    embedder = _listener(embedder_port)
    try:
        result = _kinship(
            "serve", "all", "--data-dir", str(tmp_path), "--embedder-port", str(embedder_port),
            "--indexer-port", str(indexer_port), "--ranker-port", str(ranker_port),
        )  # fmt: skip
    finally:
        embedder.kill()
        embedder.wait(10)
    assert result.returncode == 2
    line = _one_line(result)
    assert "SERVING" not in result.stderr and "started" not in result.stderr
    assert line.startswith("kinship serve all: a suite is already running here, or a stale one:")
    assert f"port {embedder_port} (embedder) is taken by pid {embedder.pid}" in line
    assert f"port {indexer_port} (indexer) is taken by pid {indexer.pid} (kinship serve indexer" in line
    assert f"the data folder {tmp_path} is locked (Milvus Lite) by pid {indexer.pid}" in line
    assert f"kill {embedder.pid} {indexer.pid}" in line
    assert indexer.poll() is None  # named, not touched
