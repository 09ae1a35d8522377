"""glibc's allocator, tuned for CPU training (BENCHMARKS.md, "CPU training: bf16 and the memory allocator").

With glibc's defaults a third of a CPU training step's wall time was kernel time: every step allocates and
frees multi-hundred-MB logits and activation tensors, each through a fresh ``mmap`` whose pages are faulted in
again. Keeping freed memory in the heap instead (no mmap for large blocks, no trimming, a 1 GiB top pad) cut the
system time about 3x and the step time 1.3x with an identical loss. The cost: with no mmap and no trimming the
heap fragments and only grows. In the Countdown miniature (RESULTS.md), with the settings applied to the whole
process, it grew from 5 to 22.9 GB over 40 SFT steps of up to 1,024-token batches and was OOM-killed on a
24 GiB machine when the next stage started.

So the tuning is scoped and opt-in. :func:`tuned_malloc` applies it around one training loop and, on the way
out, puts glibc's defaults back and returns the free heap to the system (``malloc_trim``), so a stage leaves
no grown heap to the next one; the growth *within* one stage remains (bounded by that stage's batch shapes and
steps). A training config turns it on with ``tune_malloc: true`` (the demo does: 12-24 short steps per stage);
``ASTRO_TUNE_MALLOC=1`` does for every stage. This is what ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...
MALLOC_TOP_PAD_=...`` do at start-up; ``mallopt`` does it from inside the process, for allocations made after
the call, and can undo it. No library does this for us.

Left alone when the user set any ``MALLOC_*`` variable, preloads another allocator (``LD_PRELOAD``), or the
C library is not glibc.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
# mallopt takes an int; glibc stores the trim threshold as a size_t, so -1 means "never trim" (the same as
# MALLOC_TRIM_THRESHOLD_=64G in the measurement)
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1), (M_TOP_PAD, 1 << 30))
# glibc's documented defaults (mallopt(3)); after any mallopt of these the mmap threshold stops adapting and
# stays where it is (128 KiB unless it had grown), which is glibc's start-up behaviour
DEFAULTS = ((M_MMAP_MAX, 65536), (M_TRIM_THRESHOLD, 128 * 1024), (M_TOP_PAD, 128 * 1024))
OPT_IN = "ASTRO_TUNE_MALLOC"


def _libc(env: dict[str, str]):
    """glibc, or None when the allocator is not ours to tune (see module doc)."""
    if any(k.startswith("MALLOC_") for k in env) or env.get("LD_PRELOAD"):
        return None  # the user chose the allocator's settings (or another allocator)
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _asked(env: dict[str, str]) -> bool:
    return env.get(OPT_IN, "0") == "1"


def _apply(libc, settings) -> bool:
    return all(libc.mallopt(param, value) == 1 for param, value in settings)


def tune_glibc_malloc(environ: dict[str, str] | None = None) -> bool:
    """Apply :data:`SETTINGS` with ``mallopt`` if ``ASTRO_TUNE_MALLOC=1``, for the rest of the process; True
    if applied. Safe to call more than once. (bench/cpu_allocator.py; stages use :func:`tuned_malloc`.)"""
    env = os.environ if environ is None else environ
    libc = _libc(env) if _asked(env) else None
    return libc is not None and _apply(libc, SETTINGS)


@contextmanager
def tuned_malloc(wanted: bool, environ: dict[str, str] | None = None) -> Iterator[bool]:
    """Within the block, :data:`SETTINGS` (if ``wanted`` or ``ASTRO_TUNE_MALLOC=1``); after it, glibc's
    defaults and a ``malloc_trim(0)``. Yields whether the tuning is on."""
    env = os.environ if environ is None else environ
    libc = _libc(env) if (wanted or _asked(env)) else None
    if libc is None:
        yield False
        return
    libc.malloc_trim(0)  # start from what the previous stage left free, not on top of it
    on = _apply(libc, SETTINGS)
    if on:
        log.info("glibc malloc tuned for this training loop: no mmap, no trim, 1 GiB top pad")
    try:
        yield on
    finally:
        if on:
            _apply(libc, DEFAULTS)
            libc.malloc_trim(0)  # hand the grown heap back: the next stage starts without it
