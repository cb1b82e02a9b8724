"""Plug-ins: discovered from files and entry points; corruptions are contract-checked before use.

A plug-in file may register any kind of extension (a corruption, a metric, a backbone, a dataset,
a condition family: whatever its decorators register in a `Registry`); every entry a file adds
records that file as its source, and a file that fails to import leaves none of them behind.

Sources, in order: every `*.py` (not starting with `_`) in the `corruptions/` folder of the
working directory, each extra path (a file or a folder of such files), and the entry-point group
`robustbench_mm.corruptions` of installed packages. A plug-in registers with the same
`@corruption` decorator as the built-ins. Each newly registered corruption is run on small
inputs of every kind it claims and rejected (unregistered, `InputError` naming the file and the
rule) when it breaks the contract.

A broken file in ./corruptions/ or a broken entry point does not stop the program: it is rejected
with its message (`rejected_plugins()`, which the CLI prints as a warning), the rest load, and a
protocol naming one of its corruptions fails with that message (`rejection_note`). A path given
explicitly (`paths`, the CLI's --plugins) is strict: its failure is the error. So is a plug-in
registering a name already taken (a built-in or another plug-in), wherever it comes from: skipping
it would leave a protocol naming that corruption silently running the other one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import sys
from pathlib import Path

import torch

from ..datasets.batch import PAD_ID, ModalitySpec
from ..errors import InputError
from ..registry import all_registries
from .registry import CorruptionSpec, get_corruption, list_corruptions, set_source, unregister
from .rng import SampleRandom

ENTRY_POINT_GROUP = "robustbench_mm.corruptions"
_LOADED: dict[str, list[str]] = {}
_REJECTED: dict[str, str] = {}  # origin (file or entry point) -> why it was rejected
_SHA256: dict[str, str] = {}  # plug-in corruption name -> SHA-256 of the file that registered it


class NameTaken(InputError):
    """A plug-in registers a corruption name that is already registered (exit 2, never skipped)."""


def example_input(kind: str, spec_check=None, batch: int = 6) -> tuple[torch.Tensor, ModalitySpec]:
    """A small deterministic input of a kind, with its spec (for contract checks and tests)."""
    g = torch.Generator().manual_seed(1234)
    if kind == "vector":
        spec = ModalitySpec("v", "vector", (7,), mean=torch.zeros(7), std=torch.full((7,), 1.5))
        return torch.randn(batch, 7, generator=g) * 1.5, spec
    if kind == "image":
        for c in (3, 1):
            spec = ModalitySpec("img", "image", (c, 12, 10), value_range=(0.0, 1.0),
                                mean=torch.full((c, 12, 10), 0.5), std=torch.full((c, 12, 10), 0.25))
            if spec_check is None or not spec_check(spec):
                break
        coarse = torch.rand(batch, spec.shape[0], 4, 4, generator=g)
        x = torch.nn.functional.interpolate(coarse, size=(12, 10), mode="bilinear", align_corners=False)
        return x.clamp(0, 1), spec
    if kind == "sequence":
        spec = ModalitySpec("seq", "sequence", (16, 3), mean=torch.zeros(3), std=torch.ones(3))
        return torch.randn(batch, 16, 3, generator=g).cumsum(1) * 0.3, spec
    if kind == "audio":
        spec = ModalitySpec("wav", "audio", (128,), value_range=(-1.0, 1.0), mean=torch.zeros(()), std=torch.full((), 0.3))
        t = torch.arange(128, dtype=torch.float32)
        freq = 0.05 + 0.3 * torch.rand(batch, 1, generator=g)
        return 0.6 * torch.sin(t * freq) + 0.05 * torch.randn(batch, 128, generator=g), spec
    if kind == "tokens":
        spec = ModalitySpec("tok", "tokens", (14,), vocab_size=30)
        x = torch.randint(2, 30, (batch, 14), generator=g)
        lengths = torch.randint(6, 15, (batch, 1), generator=g)
        return torch.where(torch.arange(14)[None, :] < lengths, x, torch.full_like(x, PAD_ID)), spec
    raise InputError(f"unknown modality kind {kind!r}")


def contract_violation(spec: CorruptionSpec) -> str | None:
    """The first contract rule `spec` breaks on small inputs of each claimed kind, or None."""
    for kind in spec.kinds:
        x, mspec = example_input(kind, spec.check)
        if spec.check is not None and spec.check(mspec):
            continue
        before = x.clone()
        ids = torch.arange(100, 100 + x.shape[0])
        try:
            ident = spec.fn(x, spec.param(0.0, kind), SampleRandom(ids, 0, "contract"), mspec)
            param = spec.param(3.0, kind)
            y = spec(x, param, SampleRandom(ids, 0, "contract"), mspec)
            y2 = spec(x, param, SampleRandom(ids, 0, "contract"), mspec)
        except Exception as exc:  # noqa: BLE001 - any failure of foreign code is a contract breach
            return f"run on a valid {kind} input, but it raises on one: {type(exc).__name__}: {exc}".replace("\n", " ")
        where = f" ({kind})"
        if not torch.equal(x, before):
            return "never mutate the input" + where
        for out in (ident, y):
            if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
                return f"preserve shape and dtype (expected {tuple(x.shape)} {x.dtype})" + where
            if out.device != x.device:
                return "stay on the input's device" + where
        if x.is_floating_point() and not bool(torch.isfinite(y).all()):
            return "return finite values (no NaN/Inf)" + where
        if not torch.equal(y, y2):
            return "be deterministic under the same SampleRandom (no global RNG)" + where
        if not torch.allclose(ident.double(), x.double(), atol=1e-6, rtol=0):
            return "return the input unchanged at level 0 (the identity parameter)" + where
        if mspec.value_range is not None:
            lo, hi = mspec.value_range
            if bool((y < lo).any()) or bool((y > hi).any()):
                return f"keep the value range [{lo}, {hi}]" + where
        if kind == "tokens":
            if bool((y < 0).any()) or bool((y >= mspec.vocab_size).any()):
                return f"keep token ids in [0, {mspec.vocab_size})" + where
            if not torch.equal(y[x == PAD_ID], x[x == PAD_ID]):
                return "leave PAD positions unchanged" + where
    return None


def _module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return f"robustbench_mm_plugins.{path.stem}_{digest}"


def _file_sha256(path: str | None) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""
    except OSError:
        return ""


def _accept_new(before: set[str], origin: str, source_file: str | None) -> list[str]:
    """Contract-check corruptions registered since `before`; unregister all of them on a breach."""
    new = sorted({s.name for s in list_corruptions()} - before)
    digest = _file_sha256(source_file)
    for name in new:
        set_source(name, origin)
        _SHA256[name] = digest
    for name in new:
        rule = contract_violation(get_corruption(name))
        if rule:
            for n in new:
                unregister(n)
            raise InputError(f"plug-in {origin}: corruption {name!r} rejected: it must {rule}")
    return new


def _registered() -> dict[str, set[str]]:
    """kind -> the names every registry holds now (to tell what a plug-in file added)."""
    return {kind: set(reg.names()) for kind, reg in all_registries().items()}


def _added_since(before: dict[str, set[str]]) -> list[tuple[object, str]]:
    """(registry, name) of every entry registered since `before`, except corruptions (checked apart)."""
    return [
        (reg, name)
        for kind, reg in all_registries().items()
        if kind != "corruption"
        for name in reg.names()
        if name not in before.get(kind, set())
    ]


def _load_file(path: Path) -> list[str]:
    key = str(path.resolve())
    if key in _LOADED:
        return _LOADED[key]
    before = {s.name for s in list_corruptions()}
    others = _registered()
    name = _module_name(path.resolve())
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - report any import failure as one line
        sys.modules.pop(name, None)
        for n in {s.name for s in list_corruptions()} - before:
            unregister(n)
        for reg, n in _added_since(others):
            reg.remove(n)
        if isinstance(exc, InputError):
            taken = "is already registered by" in str(exc)  # the registry's refusal of a taken name
            raise (NameTaken if taken else InputError)(f"plug-in {path}: {exc}") from None
        msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        raise InputError(f"plug-in {path} failed to import: {msg}") from None
    _LOADED[key] = _accept_new(before, str(path), key)
    for reg, n in _added_since(others):
        reg.set_source(n, str(path))
    return _LOADED[key]


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
    if path.is_file() and path.suffix == ".py":
        return [path]
    if path.is_symlink():
        _resolved(path)  # a loop or a dangling link: say which
    raise InputError(f"plug-in path {path} not found; expected a .py file or a folder of them")


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve(strict=True))
    except (OSError, RuntimeError) as e:  # a symlink loop is RuntimeError before Python 3.13
        why = "a symlink loop" if "loop" in str(e).lower() or getattr(e, "errno", None) == 40 else (getattr(e, "strerror", None) or str(e))
        raise InputError(f"plug-in {path} cannot be read ({why})") from None


def rejected_plugins() -> dict[str, str]:
    """Plug-ins the latest `load_plugins` found but rejected (origin -> the one-line reason), for a
    warning per plug-in."""
    return dict(_REJECTED)


def rejection_note(name: str) -> str:
    """For an unknown corruption `name`: the rejection of a plug-in that may have defined it
    (its file is named after it, or it registered it), as text to append to the error."""
    hits = [why for origin, why in _REJECTED.items() if Path(origin.split(" = ")[-1]).stem == name or f"'{name}'" in why]
    if not hits and _REJECTED:
        hits = [f"{len(_REJECTED)} plug-in(s) were rejected at load: " + "; ".join(_REJECTED.values())]
    return "".join(f"; {why}" for why in hits[:1])


def plugin_records(names: list[str]) -> list[dict]:
    """{"name", "source", "sha256"} of registered plug-in corruptions: what a manifest records and a
    protocol hash includes. A corruption registered from Python code (not a file or entry point)
    is identified by the SHA-256 of its function's source, or of its qualified name without one."""
    out = []
    for name in sorted(names):
        spec = get_corruption(name)
        digest = _SHA256.get(name)
        if not digest:
            try:
                digest = hashlib.sha256(inspect.getsource(spec.fn).encode()).hexdigest()
            except (OSError, TypeError):
                digest = hashlib.sha256(f"{spec.fn.__module__}.{spec.fn.__qualname__}".encode()).hexdigest()
        out.append({"name": name, "source": spec.source, "sha256": digest})
    return out


def family_records(names: list[str]) -> list[dict]:
    """{"name": "family:NAME", "source", "sha256"} of condition families defined outside the
    package: like `plugin_records`, what a protocol naming them records and hashes, so a run with
    another family's code is not compared with one made by this. The digest is of the file that
    registered the family (a plug-in file or a module), else of its function's source."""
    from .families import CONDITION_FAMILIES

    out = []
    for name in sorted(names):
        fn = CONDITION_FAMILIES[name].apply
        try:
            digest = _file_sha256(inspect.getsourcefile(fn)) or hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
        except (OSError, TypeError):
            digest = hashlib.sha256(f"{fn.__module__}.{fn.__qualname__}".encode()).hexdigest()
        out.append({"name": f"family:{name}", "source": CONDITION_FAMILIES.source(name), "sha256": digest})
    return out


def load_plugins(paths: list[str] | None = None, *, entry_points: bool = True) -> list[str]:
    """Discover and register plug-in corruptions; returns the names they registered (sorted).

    Looks in ./corruptions/ (if present), in each of `paths` (files or folders), and in the
    `robustbench_mm.corruptions` entry-point group. Loading is idempotent per file.
    `rejected_plugins()` then tells this call's rejections only: a file rejected by an earlier
    call in another working directory is no longer found, and one found again is retried (only
    accepted plug-ins are cached), so keeping old rejections would only warn about stale files.
    """
    _REJECTED.clear()
    files: list[tuple[Path, bool]] = []  # (file, strict)
    local = Path.cwd() / "corruptions"
    if local.is_dir():
        files += [(f, False) for f in _files(local)]
    for p in paths or []:
        files += [(f, True) for f in _files(Path(p))]
    names: list[str] = []
    seen: set[str] = set()
    for f, strict in files:
        try:
            key = _resolved(f)
            if key in seen:
                continue
            seen.add(key)
            names += _load_file(f)
            _REJECTED.pop(str(f), None)
        except InputError as e:
            if strict or isinstance(e, NameTaken):
                raise
            _REJECTED[str(f)] = str(e)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            origin = f"entry point {ep.name} = {ep.value}"
            if origin in _LOADED:
                names += _LOADED[origin]
                continue
            before = {s.name for s in list_corruptions()}
            try:
                loaded = ep.load()
            except Exception as exc:  # noqa: BLE001
                for n in {s.name for s in list_corruptions()} - before:
                    unregister(n)
                msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
                _REJECTED[origin] = f"plug-in {origin} failed to import: {msg}"
                continue
            try:
                source_file = inspect.getsourcefile(loaded)
            except TypeError:
                source_file = None
            try:
                _LOADED[origin] = _accept_new(before, origin, source_file)
            except InputError as e:
                _REJECTED[origin] = str(e)
                continue
            _REJECTED.pop(origin, None)
            names += _LOADED[origin]
    return sorted(set(names))
