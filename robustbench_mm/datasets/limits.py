"""Array sizes a file claims, checked before anything is allocated.

A header is a promise the bytes may not keep: a 7.7 MB .npz can declare a 7.45 GiB array, an
.npy header can claim a billion rows over 80 bytes of data, an HDF5 dataset can be a gzip bomb.
numpy and h5py allocate what the header says first and read second, so a lie ends in
MemoryError (or the machine swapping). Each reader calls these checks with the header's shape
and dtype: an array larger than the file can hold (deflate expands at most 1032:1) or than the
memory available is one line naming the array and its claimed size.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError

# zlib's deflate cannot expand more than about 1032:1 (zlib technical details, "maximum
# compression factor"); a member claiming more is forged.
DEFLATE_MAX_RATIO = 1032


def available_memory() -> int:
    """Bytes of memory this process may still allocate: MemAvailable of /proc/meminfo (Linux),
    else free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def check_claimed(where: str, name: str, shape: tuple[int, ...], dtype: np.dtype, holds: int | None = None) -> None:
    """One line unless an array of `shape` x `dtype` fits in what the file `holds` (bytes it can
    yield, when known) and in the memory available."""
    claimed = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize
    what = f"{where}: array {name!r} claims shape {tuple(int(s) for s in shape)} of {np.dtype(dtype)} ({size_text(claimed)})"
    if holds is not None and claimed > holds:
        raise InputError(f"{what}, but the file holds at most {size_text(holds)} for it; the file is damaged or forged")
    free = available_memory()
    if claimed > free:
        raise InputError(f"{what}, more than the {size_text(free)} of memory available; refusing to allocate it")


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(f)
    return shape, dtype


def check_npy(path: Path) -> None:
    """The .npy header of `path` against the file's size and the memory available."""
    try:
        with open(path, "rb") as f:
            shape, dtype = _npy_header(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{str(path)!r} is not a readable .npy array ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if dtype.hasobject:
        return  # refused by np.load(allow_pickle=False) with its own message
    check_claimed(str(path), Path(path).stem, shape, dtype, holds=Path(path).stat().st_size - offset)


def check_npz(path: Path) -> None:
    """Every member of an .npz: its header's claim against the bytes the zip can yield (the
    member's size, itself bounded by deflate's ratio) and the memory available."""
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                bound = info.compress_size * (DEFLATE_MAX_RATIO if info.compress_type == zipfile.ZIP_DEFLATED else 1)
                with z.open(info) as f:
                    shape, dtype = _npy_header(f)
                    header = f.tell()
                if dtype.hasobject:
                    continue
                holds = min(info.file_size, bound) - header
                check_claimed(str(path), info.filename[: -len(".npy")], shape, dtype, holds=holds)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"feature file {str(path)!r} is not a readable .npz ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
