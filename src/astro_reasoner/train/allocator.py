"""glibc's allocator, tuned for CPU training (BENCHMARKS.md, "CPU training: bf16 and the memory allocator").

With glibc's defaults a third of a CPU training step's wall time was kernel time: every step allocates and
frees multi-hundred-MB logits and activation tensors, each through a fresh ``mmap`` whose pages are faulted in
again. Keeping freed memory in the heap instead (no mmap for large blocks, no trimming, a 1 GiB top pad) cut the
system time about 3x and the step time 1.3-1.4x with an identical loss in short runs. The cost showed in a long
one: with no mmap and no trimming the heap fragments and only grows. In the Countdown miniature (RESULTS.md)
the process grew from 5 to 22.9 GB over 40 SFT steps of up to 1,024-token batches and was OOM-killed on a
24 GiB machine when the next stage started. So it is OPT-IN (``ASTRO_TUNE_MALLOC=1``), for short runs or
machines with memory to spare; jemalloc (preloaded) gave the same speed at 11.5 GB in the A/B. This is what
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=... MALLOC_TOP_PAD_=...`` do at start-up; ``mallopt`` does it from
inside the process, for allocations made after the call. No library does this for us.

Left alone unless ``ASTRO_TUNE_MALLOC=1``, and also when the user set any ``MALLOC_*`` variable, preloads
another allocator (``LD_PRELOAD``), or the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
# mallopt takes an int; glibc stores the trim threshold as a size_t, so -1 means "never trim" (the same as
# MALLOC_TRIM_THRESHOLD_=64G in the measurement)
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1), (M_TOP_PAD, 1 << 30))
OPT_IN = "ASTRO_TUNE_MALLOC"


def tune_glibc_malloc(environ: dict[str, str] | None = None) -> bool:
    """Apply :data:`SETTINGS` with ``mallopt``; True if applied. Safe to call more than once."""
    env = os.environ if environ is None else environ
    if env.get(OPT_IN, "0") != "1":
        return False
    if any(k.startswith("MALLOC_") for k in env) or env.get("LD_PRELOAD"):
        return False  # the user chose the allocator's settings (or another allocator)
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = all(libc.mallopt(param, value) == 1 for param, value in SETTINGS)
    if ok:
        log.info("glibc malloc tuned for training (%s=1): no mmap, no trim, 1 GiB top pad", OPT_IN)
    return ok
