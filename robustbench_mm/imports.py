"""Importing the user's code (`module:factory` models and datasets, the classes a trusted pickle
names) from the working directory without letting a file there replace an installed package.

`python -m` puts the working directory first on sys.path, and so did our factory loaders: a
`./h5py.py` then shadowed the real h5py, and the reader's error told the user to pip install a
package that was installed. The working directory goes last instead: installed packages win,
and a module only the working directory has is still found.
"""

from __future__ import annotations

import importlib
import os
import sys


_ADDED: list[str] = []  # the working directory this function put on sys.path last time


def working_directory_last() -> None:
    """Move the working directory (and the '' that stands for it) to the end of sys.path. A
    directory put there by an earlier call, when the process has since changed directory, is taken
    off: its modules must not answer for the new working directory's."""
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", cwd, *_ADDED)] + [cwd]
    _ADDED[:] = [cwd]
    importlib.invalidate_caches()  # a module file written after start-up must still be found
