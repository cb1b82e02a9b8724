"""Writing a file whole or not at all: the one helper every command's output goes through.

`atomic_write` writes to a temporary name of the writing process in the same folder (`.NAME.tmpPID`),
fsyncs it and renames it into place, so a crash, a kill or a full disk leaves the old file or the new
one, never half of one, and removes its temporary file on every exit path it lives through. A
process killed outright (kill -9) leaves its temporary file; the next write to that folder removes
it once no process of that PID runs, and never touches the file of a writer that is still running.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
from pathlib import Path

from .errors import InputError


def disk_error(e: OSError, path: Path, kept: str) -> InputError:
    """A failed write as one line: what happened, to which file, what was kept."""
    if e.errno == errno.ENOSPC:
        return InputError(f"disk full while writing {path}; {kept}; free space and run the same command again to resume")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"cannot write {path}: permission denied; choose a writable --out")
    return InputError(f"cannot write {path}: {e.strerror or e}; {kept}")


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")  # `.NAME.tmpPID`, see `_temporary`


def _temporary(path: Path) -> Path:
    """The name this process writes `path` under before renaming it: no other process uses it."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(folder: Path, name: str = "*") -> None:
    """Delete the temporary files (of `name`, or of any file) left by writers that were killed; a
    running process's temporary file is never touched (it may be mid-write)."""
    for p in Path(folder).glob(f".{glob.escape(name) if name != '*' else '*'}.tmp*"):
        match = _TEMPORARY.match(p.name)
        if match and int(match["pid"]) != os.getpid() and not _process_alive(int(match["pid"])):
            p.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes, kept: str = "nothing else was changed", durable: bool = True,
                 sweep: bool = True) -> None:
    """Write `data` to `path` (parent folders created) via this process's temporary file, fsync
    and os.replace; the temporary file is removed on every exit path. OSError -> InputError.

    durable=False skips the fsync (per-sample records: a damaged one is detected on resume).
    sweep=False skips removing killed writers' temporaries of `path` first: for a writer that swept
    its locked folder when it opened it (the run writer), where the scan of a folder of thousands
    of records would cost ~2 ms per write (4,000 files) and grow with the run.
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if sweep:
            remove_stale_temporaries(path.parent, path.name)
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise disk_error(e, path, kept) from None
        raise
