"""Large tensors without page faults: glibc's malloc told to keep large blocks in its heap.

glibc serves every allocation above its mmap threshold (at most 32 MiB, however it adapts) with fresh pages from
the kernel and gives them back on free, so each large tensor a network allocates is paid again in page faults as
it is first written. A 128 x 128 slice batch of 8 with 64 channels is 33 MiB: EDTS-Trans allocates dozens of those
per sampling step, and on this project's CPU (2 AVX2 cores, one thread, other work running) the faults made it
about twice as slow: 8 slices of 128 x 128 in one call took 2.35 s per slice against 1.10-1.18 s with the
thresholds below. Through the engine, which gives a sampling model one slice per call on the CPU (smaller blocks,
fewer of them above glibc's threshold), ``medtrans translate`` of a 120 x 144 x 88 benchmark volume with the shipped
EDTS-Trans took 141 s with glibc's defaults (``MEDTRANS_MALLOC=system``) and 117 s with these.

:func:`keep_large_buffers` raises the mmap threshold to 256 MiB and the trim threshold to 512 MiB (``mallopt``), the
settings ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` would give at start: blocks up to 256 MiB come
from the heap and, once freed, are reused; the process gives memory back to the system when more than 512 MiB lie
free at the top of its heap. The price is up to that much freed memory kept by a process that translated, never
more peak memory. Nothing happens where malloc is not glibc's, where the user has set either variable, or where
``MEDTRANS_MALLOC=system``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

__all__ = ["keep_large_buffers", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 256 * 2**20
TRIM_THRESHOLD = 512 * 2**20
_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_state: bool | None = None


def keep_large_buffers() -> bool:
    """Set glibc's thresholds once per process (see the module notes). True when they are in effect."""
    global _state
    with _lock:
        if _state is None:
            _state = _apply()
        return _state


def _apply() -> bool:
    if os.environ.get("MEDTRANS_MALLOC", "").lower() == "system":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):  # glibc only (not musl)
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
