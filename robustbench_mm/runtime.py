"""Process-wide CPU settings the command line applies before it evaluates anything.

A batch of corrupted inputs is tens of MB. With glibc's default malloc, every fresh tensor of
that size is mmap'd and page-faulted in again after the previous one was freed, and on a virtual
machine those faults cost more than the corruption arithmetic itself (benchmarks/
bench_corruptions.py measures both ways in one run). Keeping freed memory for reuse is what
jemalloc and tcmalloc do, and what PyTorch's CPU performance guide recommends preloading them
for; `mallopt` gets the same effect without a preload. The library's API leaves the process
alone: call `keep_freed_memory()` yourself to get the CLI's behaviour.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
_TRIM_NEVER = 2**31 - 1  # largest value the int argument takes: freed heap memory stays mapped


def keep_freed_memory() -> bool:
    """Make glibc malloc reuse freed blocks up to 32 MB instead of unmapping them; True if applied.

    A no-op (False) off Linux/glibc, and when the environment variable RBMM_MALLOC=default.
    """
    if os.environ.get("RBMM_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER))
