"""Resident memory of the processes under test, found by pid or by the port they listen on (Linux /proc)."""

from __future__ import annotations

import os
from pathlib import Path

from kinship.runtime.processes import pids_listening_on

PROC = Path("/proc")
__all__ = ["cpu_seconds", "pids_listening_on", "resolve_watch", "rss_bytes", "total_cpu", "total_rss"]


def rss_bytes(pid: int) -> int | None:
    """VmRSS of `pid` in bytes, None when the process is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


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
