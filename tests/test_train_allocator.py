"""train/allocator.py: glibc's malloc tuned for CPU training, and left alone when the user chose otherwise."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from astro_reasoner.train.allocator import tune_glibc_malloc, tuned_malloc

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# glibc's own counters, read from a fresh interpreter: hblks = blocks served by mmap, arena = heap bytes.
LIBC = r"""
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
"""

# Does a 256 MiB malloc get its own mmap (glibc's default above 32 MiB)?
PROBE = LIBC + r"""
from astro_reasoner.train.allocator import tune_glibc_malloc
applied = tune_glibc_malloc({"ASTRO_TUNE_MALLOC": "1"}) if sys.argv[1] == "tuned" else False
before = libc.mallinfo2().hblks
p = libc.malloc(256 << 20)
print(applied, libc.mallinfo2().hblks - before)
"""


# The scoped form (what the training stages use): tuned inside the block; outside it, large blocks get their
# own mmap again and the heap grown inside the block is handed back.
SCOPED = LIBC + r"""
from astro_reasoner.train.allocator import tuned_malloc
libc.free.argtypes = [ctypes.c_void_p]
MiB = 1 << 20
with tuned_malloc(True, {}) as on:
    blocks = libc.mallinfo2().hblks
    p = libc.malloc(256 * MiB)
    inside_mmapped = libc.mallinfo2().hblks - blocks
    libc.free(p)
    heap_inside = libc.mallinfo2().arena // MiB
heap_after = libc.mallinfo2().arena // MiB
blocks = libc.mallinfo2().hblks
p = libc.malloc(256 * MiB)
print(on, inside_mmapped, heap_inside >= 256, heap_after < 256, libc.mallinfo2().hblks - blocks)
"""


def _probe(mode: str, code: str = PROBE) -> str:
    return subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}).stdout.split()


@glibc
def test_tuned_malloc_keeps_large_blocks_in_the_heap():
    assert _probe("default") == ["False", "1"]  # a fresh mmap per large tensor: the cost being removed
    assert _probe("tuned") == ["True", "0"]


@glibc
def test_scoped_tuning_is_undone_and_the_heap_handed_back():
    # inside: no mmap, and the freed 256 MiB stays in the heap; after: the heap is trimmed, large blocks mmap
    assert _probe("scoped", SCOPED) == ["True", "0", "True", "True", "1"]


@pytest.mark.parametrize("env", [{}, {"ASTRO_TUNE_MALLOC": "0"},
                                 {"ASTRO_TUNE_MALLOC": "1", "MALLOC_ARENA_MAX": "2"},
                                 {"ASTRO_TUNE_MALLOC": "1", "LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}])
def test_off_by_default_and_user_choice_is_left_alone(env):
    assert tune_glibc_malloc(env) is False
    wanted = env.get("ASTRO_TUNE_MALLOC") == "1"  # asked for, but the user's allocator choice wins
    with tuned_malloc(wanted, env) as on:
        assert on is False
