"""kinship.runtime.processes on real processes: a child that dies with its parent (SIGKILL of the
parent included), and the pid and command of whoever holds a port or a flock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kinship.runtime import processes
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl are Linux's")

# Starts a grandchild with die_with_parent and prints its pid, then waits to be killed.
_MIDDLE = """
import signal, subprocess, sys, time
from kinship.runtime.processes import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))
print(child.pid, flush=True)
time.sleep(600)
"""


def _started(code: str, *args: str) -> tuple[subprocess.Popen, str]:
    """A python child running `code`; returns it and the first line it prints (its readiness)."""
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    assert line, f"the helper exited with {process.wait(10)} before it was ready"
    return process, line


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while processes.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not processes.alive(pid)


def test_a_child_dies_when_its_parent_is_sigkilled() -> None:
    middle, line = _started(_MIDDLE)
    grandchild = int(line)
    try:
        assert processes.alive(grandchild)
        assert processes.parent_of(grandchild) == middle.pid
        middle.kill()  # SIGKILL: no handler, no cleanup in the parent
        middle.wait(10)
        assert _gone_within(grandchild, 5), "the child outlived its SIGKILLed parent"
    finally:
        _stop(middle)
        if processes.alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_a_child_whose_parent_is_already_gone_signals_itself() -> None:
    # The race where the parent dies before the child's prctl: the child's parent is then not
    # the one die_with_parent() was made in. A grandchild of this process looks the same.
    arm = processes.die_with_parent(signal.SIGTERM)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, whose parent is the one expected: it lives on
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        arm()
        grandchild = os.fork()
        if grandchild == 0:
            arm()  # its parent is the child, not this test's process
            os._exit(0)
        _, status = os.waitpid(grandchild, 0)
        os._exit(100 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 100 + signal.SIGTERM


def test_the_holder_of_a_port_is_named() -> None:
    port = free_port()
    assert not processes.port_taken("127.0.0.1", port)
    code = "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    code += "print('ready', flush=True); time.sleep(600)"
    holder, _ = _started(code, str(port))
    try:
        assert processes.port_taken("127.0.0.1", port)
        assert processes.port_taken("0.0.0.0", port)
        (named,) = processes.port_holders(port)
        assert named.pid == holder.pid
        assert named.command.startswith("python") and "socket" in named.command
        assert f"pid {holder.pid} (python" in processes.describe([named])
    finally:
        _stop(holder)
    assert not processes.port_taken("127.0.0.1", port)
    assert processes.port_holders(port) == []


def test_the_holder_of_a_flock_is_named(tmp_path: Path) -> None:
    lock = tmp_path / "LOCK"
    assert processes.lock_holders(lock) is None  # no file: nobody
    lock.touch()
    assert processes.lock_holders(lock) is None  # a file nobody locks
    code = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX)\n"
    code += "print('ready', flush=True); time.sleep(600)"
    holder, _ = _started(code, str(lock))
    try:
        holders = processes.lock_holders(lock)
        assert [h.pid for h in holders] == [holder.pid]
    finally:
        _stop(holder)
    assert processes.lock_holders(lock) is None


def test_the_suite_s_own_commands_read_as_kinship() -> None:
    process, _ = _started("import time; print('ready', flush=True); time.sleep(600)")
    try:
        assert processes.command_of(process.pid).startswith("python")
    finally:
        _stop(process)
    assert processes.command_of(os.getpid())  # this test's own command line
    assert processes.descends_from(os.getpid(), os.getppid())
    assert not processes.descends_from(os.getppid(), os.getpid())
    assert "cannot see" in processes.describe([])


def test_serve_all_checks_the_lock_the_indexer_takes() -> None:
    from milvus_lite.db import LOCK_FILENAME

    from kinship.cli.serve import LITE_LOCK
    from kinship.indexer.bootstrap import LITE_FILE
    from kinship.indexer.bootstrap import LITE_LOCK as INDEXER_LITE_LOCK

    assert LITE_LOCK == INDEXER_LITE_LOCK == LITE_FILE / LOCK_FILENAME
