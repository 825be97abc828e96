"""Keep freed memory in the process: the allocator setting that makes CPU training and prediction fast.

A training step or a batch of predictions allocates and frees the same large tensors (edge activations,
gradients) every batch.
glibc's defaults hand blocks above a dynamic threshold straight back to the kernel (``munmap``) and
trim the heap top when it is freed, so every step faults its memory in again page by page, zeroed
by the kernel: on 2 CPU threads about 30% of the training time was kernel time. Telling glibc to
serve every block from the heap (no ``mmap``) and to keep what is freed turns that into reuse.
Measured (benchmarks/RESULTS.md): 1.6-1.8x the model's training throughput for the ``small`` preset,
and 1.6x the network's share of batched prediction (CGAT-PBE-BandGap, 2,000 crystals, 2 threads:
9.4 s with 8.6 s of it kernel time, against 5.8 s with 0.1 s).

The cost is that the process keeps its peak memory until it exits (for prediction in batches of 128,
about 1 GB), which a training or screening process does anyway. It changes nothing on systems without
glibc (macOS, Windows, musl). Switched off with ``TrainConfig(allocator="system")`` for a training,
and for everything with the environment variable ``MGL_CGAT_ALLOCATOR=system`` (read at the first call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_applied = False


def keep_freed_memory() -> bool:
    """Ask glibc to allocate from the heap only and keep freed memory (once per process).

    Returns whether the setting is in effect.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("MGL_CGAT_ALLOCATOR", "keep").strip().lower() == "system":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_MAX, 0),  # no block is handed to the kernel with mmap/munmap
        (_M_TRIM_THRESHOLD, 2**31 - 1),  # freed memory at the heap top is kept, not trimmed
        (_M_TOP_PAD, 1 << 28),  # the heap grows in 256 MB steps, not page by page
    ))
    _applied = ok
    if not ok:
        logger.info("mallopt refused the allocator settings; the networks run with the system's")
    return ok
