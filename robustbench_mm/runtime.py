"""Process-wide CPU settings the command line applies before it evaluates anything.

Threads. OpenMP's worker threads (torch's intra-op pool) spin-wait after each parallel region
by default. On a machine whose cores are busy with other work (a shared CI runner) the spinning
threads compete with the threads doing the work: `rbmm eval --protocol quick` took 2-4x the wall
time of one thread (issue 23; docs/performance.md has the figures). `thread_policy` makes the
workers sleep when idle (OMP_WAIT_POLICY=PASSIVE) unless the user chose a policy, and applies an
explicit thread count. Both are read when torch loads, so the CLI calls it before importing torch.

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


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch's CPU pools read at load


def thread_policy(threads: int | None = None) -> None:
    """Set OMP_WAIT_POLICY=PASSIVE unless already set, and `threads` intra-op threads when given
    (benchmarks print `describe_threads()` beside their figures).

    Environment variables act only if torch is not imported yet; when it is (the library used from
    Python), the thread count is applied through torch.set_num_threads and the wait policy is
    whatever the process started with.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads is not None:
        if threads < 1:
            from .errors import InputError

            raise InputError(f"--threads must be an integer >= 1, got {threads}")
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)


def describe_threads() -> str:
    """`torch threads N, OMP_WAIT_POLICY=..., OMP_NUM_THREADS=...` as this process has them."""
    import torch

    policy = os.environ.get("OMP_WAIT_POLICY", "(unset: active spinning)")
    count = os.environ.get("OMP_NUM_THREADS", "(unset)")
    return f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={policy}, OMP_NUM_THREADS={count}"


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
