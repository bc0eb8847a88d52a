"""The test helpers' milvus-server dies with the test process that started it, SIGKILL included:
its launcher and the `milvus` binary under it are gone and its port is free within seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kinship.runtime import processes
from tests.integration.conftest import require_milvus_server

pytestmark = [
    pytest.mark.milvus_server,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal and /proc: Linux"),
]

ROOT = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 15.0

# A test process of its own: starts the helper's server, says where it is, then waits to be killed.
_TEST_PROCESS = """
import sys, time
from pathlib import Path
from tests.integration.conftest import MilvusProcess
server = MilvusProcess(Path(sys.argv[1]))
server.start()
print(server.process.pid, server.uri.rsplit(":", 1)[1], flush=True)
time.sleep(600)
"""


def _descendants(pid: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and int(entry.name) != pid and processes.descends_from(int(entry.name), pid)
    ]


def test_milvus_server_dies_with_the_test_process(tmp_path: Path) -> None:
    require_milvus_server()
    test_process = subprocess.Popen(
        [sys.executable, "-c", _TEST_PROCESS, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    server: list[int] = []
    try:
        line = test_process.stdout.readline().split()
        assert len(line) == 2, f"the helper did not start a server (exit code {test_process.wait(30)})"
        launcher, port = int(line[0]), int(line[1])
        server = [launcher, *_descendants(launcher)]
        assert len(server) >= 2, "no milvus binary under the launcher"
        assert processes.port_taken("127.0.0.1", port)
        test_process.kill()  # SIGKILL: no teardown runs
        test_process.wait(30)
        deadline = time.monotonic() + GONE_WITHIN_S
        while time.monotonic() < deadline and (
            any(processes.alive(pid) for pid in server) or processes.port_taken("127.0.0.1", port)
        ):
            time.sleep(0.2)
        assert [pid for pid in server if processes.alive(pid)] == [], "Milvus outlived the test process"
        assert not processes.port_taken("127.0.0.1", port)
    finally:
        if test_process.poll() is None:
            test_process.kill()
            test_process.wait(30)
        for pid in server:  # what this test started, should it have outlived the test process
            with contextlib.suppress(ProcessLookupError):
                if processes.alive(pid):
                    os.kill(pid, signal.SIGKILL)
