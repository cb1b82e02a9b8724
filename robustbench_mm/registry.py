"""One registry shape for every extension point: corruptions, metrics, backbones, datasets,
condition families and report sections.

An entry arrives one of three ways, and each remembers where it came from:

- a decorator on the object (`@registry.register("name")`, or a kind-specific decorator built on
  it), source: the defining module, or "builtin" for ours;
- a lazy `"module:object"` string (`registry.lazy("name", "pkg.mod:obj")`), imported on first use
  so that listing names never imports heavy code;
- an installed package's entry point in the registry's group (`robustbench_mm.<kind>`), loaded
  once, on the first lookup or listing, source: "entry point <name> (<distribution>)".

A lookup that misses raises an `InputError` listing the available names. Registering a name twice
with another object is an error naming who registered it first: a protocol naming that entry must
never silently run the other one. Names keep the order they were declared in (a lazy entry keeps
its place when it is resolved), so tables and listings built from a registry do not depend on
which entries happened to be used first.

Every registry made here is recorded in `all_registries()` (by kind), which `rbmm list` and the
plug-in loader walk.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from .errors import InputError, one_of

T = TypeVar("T")

BUILTIN = "builtin"
ENTRY_POINT_PREFIX = "robustbench_mm."


def source_of(obj: object) -> str:
    """'builtin' for objects defined inside this package, else the defining module's name."""
    module = getattr(obj, "__module__", None) or BUILTIN
    return BUILTIN if module.startswith("robustbench_mm.") or module == "robustbench_mm" else module


def import_object(target: str, what: str) -> object:
    """The object a `module:object` string names, or an InputError saying which part is missing."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"{what}: {target!r} is not of the form module:object")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InputError(f"{what}: cannot import module {module_name!r} ({e})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{what}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object and where it came from."""

    name: str
    obj: T
    source: str


_ALL: dict[str, "Registry"] = {}


def all_registries() -> dict[str, "Registry"]:
    """kind -> registry, for every registry created so far (the modules defining them imported)."""
    return dict(_ALL)


class Registry(Generic[T]):
    """Named objects of one kind. `kind` names them in messages ("unknown metric 'x'; expected...")."""

    def __init__(self, kind: str, *, group: str | None = None, check: Callable[[str, T], None] | None = None):
        self.kind = kind
        self.group = group if group is not None else f"{ENTRY_POINT_PREFIX}{kind.replace(' ', '_')}s"
        self._check = check
        self._entries: dict[str, Entry[T]] = {}
        self._lazy: dict[str, str] = {}
        self._lazy_sources: dict[str, str] = {}  # lazy name -> where it was declared (entry points)
        self._order: list[str] = []  # every name, in declaration order
        self._entry_points_loaded = False
        _ALL.setdefault(kind, self)

    # -- registration -------------------------------------------------------------------------
    def add(self, name: str, obj: T, source: str | None = None) -> T:
        """Register `obj` as `name`; the same object again is a no-op, another one an error."""
        taken = self._entries.get(name)
        if taken is not None:
            if taken.obj is obj:
                return obj
            raise InputError(f"{self.kind} {name!r} is already registered by {taken.source}")
        if name in self._lazy:
            raise InputError(f"{self.kind} {name!r} is already registered by {self._lazy[name]}")
        if self._check is not None:
            self._check(name, obj)
        self._entries[name] = Entry(name, obj, source if source is not None else source_of(obj))
        if name not in self._order:
            self._order.append(name)
        return obj

    def register(self, name: str, source: str | None = None) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda obj: self.add(name, obj, source)

    def lazy(self, name: str, target: str) -> None:
        """Register `name` as the object `module:object`, imported on first use."""
        if name in self._entries or name in self._lazy:
            raise InputError(f"{self.kind} {name!r} is already registered")
        self._lazy[name] = target
        self._order.append(name)

    def remove(self, name: str) -> None:
        """Forget an entry (a plug-in that failed its contract check at load)."""
        self._entries.pop(name, None)
        self._lazy.pop(name, None)
        self._lazy_sources.pop(name, None)
        if name in self._order:
            self._order.remove(name)

    def set_source(self, name: str, source: str) -> None:
        """Record where an entry came from once it is known (a plug-in file's path)."""
        if name in self._lazy:
            self._lazy_sources[name] = source
            return
        entry = self._entries[name]
        self._entries[name] = Entry(entry.name, entry.obj, source)

    # -- lookup -------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name in self._entries or ep.name in self._lazy:
                continue
            dist = getattr(ep, "dist", None)
            self._lazy[ep.name] = ep.value
            self._order.append(ep.name)
            self._lazy_sources[ep.name] = f"entry point {ep.name} ({dist.name if dist else ep.value})"

    def _resolve(self, name: str) -> Entry[T]:
        target = self._lazy.pop(name)  # first: the module may register it by decorator on import
        try:
            obj = import_object(target, f"{self.kind} {name!r}")
        except InputError:
            self._lazy[name] = target
            raise
        declared = self._lazy_sources.pop(name, None)  # an entry point's or a plug-in file's
        if name in self._entries:  # importing the module registered it by decorator
            if declared:
                self.set_source(name, declared)
            return self._entries[name]
        source = declared or target.partition(":")[0]
        self.add(name, obj, source)  # type: ignore[arg-type]
        return self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        """The entry `name`; a miss lists the available names."""
        if name in self._entries:
            return self._entries[name]
        self._load_entry_points()
        if name in self._lazy:
            return self._resolve(name)
        raise one_of(self.kind, name, self.names())

    def registered(self, name: str) -> T | None:
        """The object registered as `name`, or None while it is not (or not yet: a lazy entry
        being imported) registered; imports nothing (a decorator's same-object check)."""
        entry = self._entries.get(name)
        return entry.obj if entry is not None else None

    def get(self, name: str) -> T:
        """The object registered as `name`; a miss lists the available names."""
        return self.entry(name).obj

    def source(self, name: str) -> str:
        """Where `name` came from: 'builtin', a module, a plug-in file or an entry point."""
        if name in self._lazy and name not in self._entries:
            return self._lazy_sources.get(name, self._lazy[name])
        return self.entry(name).source

    def names(self) -> list[str]:
        """Every registered name, in declaration order (lazy and entry-point names included)."""
        self._load_entry_points()
        return list(self._order)

    def items(self) -> list[tuple[str, T]]:
        """(name, object) for every entry, resolving lazy ones."""
        return [(name, self.get(name)) for name in self.names()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
