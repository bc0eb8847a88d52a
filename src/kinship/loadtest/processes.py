"""Resident memory of the processes under test, found by pid or by the port they listen on (Linux /proc)."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def rss_bytes(pid: int) -> int | None:
    """VmRSS of `pid` in bytes, None when the process is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def pids_listening_on(port: int) -> list[int]:
    """Processes of this user holding a listening socket on `port` (several with SO_REUSEPORT)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return []
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    found.append(int(entry.name))
                    break
        except (PermissionError, FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue
    return sorted(found)


def resolve_watch(spec: str) -> tuple[str, list[int]]:
    """'embedder=:50051' (the processes listening on a port) or 'embedder=1234' (a pid) -> (name, pids)."""
    name, sep, where = spec.partition("=")
    if not sep or not name or not where:
        raise ValueError(f"--watch {spec!r} must be NAME=:PORT or NAME=PID, for example embedder=:50051")
    if where.startswith(":"):
        pids = pids_listening_on(int(where[1:]))
        if not pids:
            raise ValueError(f"--watch {spec}: no process of this user listens on port {where[1:]}")
        return name, pids
    return name, [int(where)]


def total_rss(pids: list[int]) -> int | None:
    values = [rss_bytes(pid) for pid in pids]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time `pid` has used, in seconds; None when the process is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def total_cpu(pids: list[int]) -> float | None:
    values = [cpu_seconds(pid) for pid in pids]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)
