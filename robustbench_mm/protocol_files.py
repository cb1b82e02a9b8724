"""Where protocols live and what their files say, without building them: the shipped TOML files
and those in ./protocols/. Only the standard library, so `rbmm list protocols` and the help texts
that name protocols load neither torch nor the corruption kernels (`protocols.py` builds and
validates a protocol; this module finds and reads its file).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from .errors import InputError


def builtin_dir():
    return resources.files("robustbench_mm") / "protocols"


def local_dir() -> Path:
    """The working directory's `protocols/` folder: the user's own protocols, found by name."""
    return Path.cwd() / "protocols"


def names(folder) -> set[str]:
    return {p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml")} if folder.is_dir() else set()


def list_protocols() -> list[str]:
    """Names of the shipped protocols and of those in ./protocols/, sorted."""
    return sorted(names(builtin_dir()) | names(local_dir()))


def read_text(path, source: str) -> str:
    """The file as UTF-8 text; a binary or unreadable file is one InputError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"protocol {source}: not a text file (byte {e.start} is not UTF-8); expected a TOML protocol") from None
    except OSError as e:
        raise InputError(f"protocol {source}: cannot read ({e.strerror or e})") from None


def summary(name: str) -> tuple[str, str]:
    """(first line of the description, source: "builtin" or the file's path) of protocol `name`,
    read from its TOML file without validating the rest (`rbmm show protocol` validates)."""
    if name in names(local_dir()) and name not in names(builtin_dir()):
        path, source = local_dir() / f"{name}.toml", str(local_dir() / f"{name}.toml")
    else:
        path, source = builtin_dir() / f"{name}.toml", "builtin"
    label = source if source != "builtin" else f"{name}.toml"
    try:
        doc = tomllib.loads(read_text(path, label))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"protocol {label}: not valid TOML: {e}") from None
    description = doc.get("description")
    if not isinstance(description, str) or not description.strip():
        raise InputError(f"protocol {label}: 'description' must be a non-empty string, got {description!r}")
    return description.strip().splitlines()[0], source
