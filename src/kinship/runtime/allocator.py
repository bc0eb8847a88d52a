"""glibc malloc's arenas: how many a served process may have.

glibc gives a thread that allocates while another holds an arena an arena of its own, up
to 8 per core (16 on 2 cores), and each arena keeps what was freed in it for reuse. The
indexer's blocking work runs on two pools that grow to the peak concurrency (its gallery
executor and, with Milvus Lite, Lite's in-process gRPC server): under a burst it went from
9 to 24 threads and from 36 to 104 MiB of malloc heap, 54-58 MiB of it free but kept, and
stayed there (+31 MiB resident, a step that a soak reads as growth). Capped at 2 arenas, the
same load left 62 MiB of heap (17 free) and no step (`scripts/indexer_memory_probe.py
--diagnose`, docs/benchmarks.md, "Costs behind the defaults"). Python's own objects live in pymalloc regardless; the
allocations glibc serves are numpy buffers, protobuf and gRPC's.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: mallopt parameter number of M_ARENA_MAX (glibc malloc.h).
M_ARENA_MAX = -8


def cap_malloc_arenas(count: int) -> bool:
    """Caps glibc's arenas at `count` for this process; False where libc is not glibc.

    Effective only before a second thread first allocates (glibc fixes the limit when it
    first needs a new arena): call it at process start, before servers and pools exist.
    MALLOC_ARENA_MAX in the environment does the same from outside.
    """
    if count < 1:
        raise ValueError("a process needs at least one malloc arena")
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_ARENA_MAX, count) == 1
