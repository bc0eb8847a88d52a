"""Child processes that die with their parent, and who holds a port or a lock (Linux /proc).

Supervision: `die_with_parent(sig)` is a `preexec_fn` for `subprocess.Popen`. In the child,
between fork and exec, it asks the kernel (prctl PR_SET_PDEATHSIG) to send `sig` when the
parent dies, SIGKILL of the parent included; the request survives exec. The parent may have
died before the child made it: the child then sees another parent (getppid) and signals
itself. The kernel watches the *thread* that forked, so start children from a thread that
lives as long as the process (the main thread). Off Linux it is None (nothing to run).

Start-up: `port_taken(host, port)` binds the address as the gRPC server would (SO_REUSEADDR,
no SO_REUSEPORT) and lets go; `port_holders(port)` names the processes listening on a port
(/proc/net/tcp{,6} sockets in LISTEN matched to /proc/*/fd inodes); `lock_holders(path)`
names the processes holding a flock on a file (/proc/locks, and processes with it open).
The OS tells only about processes of this user (or all, as root); `describe` says so when
it names nobody.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
PR_SET_PDEATHSIG = 1
_TCP_LISTEN = "0A"
_COMMAND_CHARS = 100


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn: the child receives `sig` when the process starting it dies (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    # Loaded here, in the parent: the child only calls it between fork and exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the request: nobody would send it
            os.kill(os.getpid(), sig)

    return arm


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})" if self.command else f"pid {self.pid}"


def command_of(pid: int) -> str:
    """The command line of `pid`, short: `kinship serve indexer ...` for the suite's own processes."""
    try:
        argv = [a.decode(errors="replace") for a in (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")]
    except OSError:
        return ""
    while argv and not argv[-1]:
        argv.pop()
    if not argv:
        with contextlib.suppress(OSError):
            return f"[{(PROC / str(pid) / 'comm').read_text().strip()}]"
        return ""
    if len(argv) >= 3 and argv[1] == "-m" and argv[2] == "kinship.cli.main":
        argv = ["kinship", *argv[3:]]
    elif len(argv) >= 2 and "python" in Path(argv[0]).name and Path(argv[1]).name == "kinship":
        argv = ["kinship", *argv[2:]]
    else:
        argv[0] = Path(argv[0]).name
    text = " ".join(argv)
    return text if len(text) <= _COMMAND_CHARS else text[: _COMMAND_CHARS - 3] + "..."


def _holders(pids: Iterable[int]) -> list[Holder]:
    return [Holder(pid, command_of(pid)) for pid in sorted(set(pids))]


def _pids_with_fd(matches: Callable[[str], bool]) -> list[int]:
    """Processes (that this user may inspect) with an open descriptor whose link target `matches`."""
    found = []
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if matches(os.readlink(fd)):
                        found.append(int(entry.name))
                        break
        except OSError:  # gone, or another user's
            continue
    return sorted(found)


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == _TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def pids_listening_on(port: int) -> list[int]:
    """Processes of this user holding a listening socket on `port` (several with SO_REUSEPORT)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return []
    return _pids_with_fd(lambda target: target.startswith("socket:[") and target[8:-1] in inodes)


def port_holders(port: int) -> list[Holder]:
    return _holders(pids_listening_on(port))


def port_taken(host: str, port: int) -> bool:
    """True when a server could not listen on host:port now (binds as gRPC does, then lets go).

    False also when the address cannot be bound for another reason (not local, no such
    name): the server's own bind reports those.
    """
    if port <= 0:
        return False
    bind_host = host.strip("[]") or None
    try:
        infos = socket.getaddrinfo(bind_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return False
    for family, kind, proto, _name, address in infos:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
                sock.listen(1)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def _lock_ids(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return os.major(st.st_dev), os.minor(st.st_dev), st.st_ino


def _proc_lock_pids(ids: tuple[int, int, int]) -> list[int] | None:
    """Pids /proc/locks lists as holding a lock on the file with `ids`; None where it cannot be read."""
    try:
        lines = (PROC / "locks").read_text().splitlines()
    except OSError:
        return None
    pids = []
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->":  # "->": a waiter, not a holder
            continue
        with contextlib.suppress(ValueError):
            major, minor, inode = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == ids:
                pids.append(int(parts[4]))
    return pids


def _probe_flock(path: Path) -> bool:
    """Off Linux: try the lock and let go at once (True: someone holds it)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases the lock when it was taken
    return False


def lock_holders(path: Path) -> list[Holder] | None:
    """Who holds a flock on `path`: None when nobody does, else the holders the OS names (maybe none)."""
    path = Path(path)
    ids = _lock_ids(path)
    if ids is None:
        return None
    pids = _proc_lock_pids(ids)
    if pids is None:
        locked = _probe_flock(path)
        pids = []
    else:
        locked = bool(pids)
    if not locked:
        return None
    # flock's pid is the process that took the lock; processes that inherited it keep the file open.
    real = os.path.realpath(path)
    alive = [pid for pid in pids if (PROC / str(pid)).exists()]
    return _holders([*alive, *_pids_with_fd(lambda target: target == real)])


def describe(holders: list[Holder]) -> str:
    """'pid 12 (kinship serve indexer ...)', several joined with 'and', or who the OS keeps hidden."""
    if not holders:
        return "a process this user cannot see (another user's, or outside this container)"
    return " and ".join(str(h) for h in holders)


def parent_of(pid: int) -> int | None:
    try:
        return int((PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descends_from(pid: int, ancestor: int) -> bool:
    """True when `pid` is `ancestor` or one of its descendants (walks /proc parent links)."""
    seen = set()
    while pid and pid not in seen:
        if pid == ancestor:
            return True
        seen.add(pid)
        pid = parent_of(pid) or 0
    return False


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        if sys.platform.startswith("linux"):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in ("Z", "X")
