"""`kinship serve NAME --processes 2`: two copies on one port, supervised, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship.cli.serve import wait_serving
from kinship.loadtest.processes import pids_listening_on
from kinship.runtime.processes import alive
from tests.conftest import free_ports


def test_two_processes_share_the_port_and_stop_together(tmp_path) -> None:
    port, health_port = free_ports(2)
    cmd = [sys.executable, "-m", "kinship.cli.main", "serve", "embedder", "--port", str(port), "--processes", "2",
           "--health-port", str(health_port), "--artifacts-dir", str(tmp_path), "--log-level", "warning"]  # fmt: skip
    supervisor = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_serving(f"127.0.0.1:{port}", time.monotonic() + 120, supervisor)
        deadline = time.monotonic() + 60
        while len(pids_listening_on(port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        copies = pids_listening_on(port)
        assert len(copies) == 2 and supervisor.pid not in copies
        # Only the first copy serves the health-only port (it is not shared).
        assert len(pids_listening_on(health_port)) == 1
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0
    assert pids_listening_on(port) == []


def test_copies_die_with_a_sigkilled_supervisor(tmp_path) -> None:
    (port,) = free_ports(1)
    cmd = [sys.executable, "-m", "kinship.cli.main", "serve", "embedder", "--port", str(port), "--processes", "2",
           "--artifacts-dir", str(tmp_path), "--log-level", "warning"]  # fmt: skip
    supervisor = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    copies: list[int] = []
    try:
        assert wait_serving(f"127.0.0.1:{port}", time.monotonic() + 120, supervisor)
        deadline = time.monotonic() + 60
        while len(copies := pids_listening_on(port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(copies) == 2
        supervisor.kill()  # SIGKILL: the supervisor stops nothing itself
        supervisor.wait(30)
        deadline = time.monotonic() + 15
        while (any(alive(pid) for pid in copies) or pids_listening_on(port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in copies if alive(pid)] == [] and pids_listening_on(port) == []
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(30)
        for pid in copies:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_processes_need_a_fixed_port(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kinship.cli.main",
            "serve",
            "embedder",
            "--port",
            "0",
            "--processes",
            "2",
            "--artifacts-dir",
            str(tmp_path),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--processes needs a fixed --port" in result.stderr
