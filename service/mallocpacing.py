"""glibc malloc thresholds for a process that allocates and frees megabyte buffers on every request.

A 2000-series remote write body is ≈230 KB received and ≈790 KB decompressed, freed again when the request
ends. With glibc's defaults such buffers are either mmapped (above a threshold that starts at 128 KB) or
taken from the top of the heap, which is handed back to the kernel (trimmed) as soon as more than twice that
threshold is free there; either way the next request faults the same pages in again, zero-filled.
`/write` under wrk measured ≈260 minor page faults per request and ≈0.6 ms of system time in the serving
thread; with buffers up to ``MMAP_THRESHOLD`` kept in the heap and up to ``TRIM_THRESHOLD`` free at its top,
9 faults, and 10 to 27 % less CPU per request in alternating runs (docs/benchmarks.md). The price is at most
``TRIM_THRESHOLD`` of freed memory kept mapped.

Settings a user gives through glibc's own variables (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``)
win. Other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

TRIM_THRESHOLD = 8 << 20
MMAP_THRESHOLD = 4 << 20
_M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def pace() -> bool:
    """Call once at process start (the node, each ingest worker). True when the thresholds were set."""
    if platform.libc_ver()[0] != "glibc" or any(name in os.environ for name in _ENV):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mmap_set = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    trim_set = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(mmap_set and trim_set)
