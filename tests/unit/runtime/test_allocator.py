"""cap_malloc_arenas: a process capped at 2 arenas keeps to 2 however many threads allocate (glibc)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only"
)

# Eight threads allocate at once (100 kB each: glibc's arenas, not pymalloc, not mmap), then
# the process counts its arenas in malloc_info's report.
CHILD = r"""
import ctypes, re, sys, tempfile, threading
from kinship.runtime.allocator import cap_malloc_arenas
if sys.argv[1] != "0":
    assert cap_malloc_arenas(int(sys.argv[1]))
barrier = threading.Barrier(8)
kept = []
def work():
    barrier.wait()
    kept.append([b"x" * 100_000 for _ in range(4)])
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    handle = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    print(len(re.findall(r"<heap nr=", open(report.name).read())))
"""


def _arenas(cap: int) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, str(cap)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_capped_threads_share_two_arenas_where_glibc_would_give_each_its_own() -> None:
    assert _arenas(0) > 2  # glibc's default: a new arena per allocating thread, up to 8 per core
    assert _arenas(2) <= 2


def test_the_indexer_caps_its_arenas_by_default_and_the_others_do_not() -> None:
    from kinship.runtime import config

    def default(service: str) -> int:
        return next(s.default for s in config.server_settings(service, 0) if s.name == "malloc_arena_max")

    assert default("indexer") == 2
    assert default("embedder") == 0 and default("ranker") == 0


def test_no_arenas_is_refused() -> None:
    from kinship.runtime.allocator import cap_malloc_arenas

    with pytest.raises(ValueError):
        cap_malloc_arenas(0)
