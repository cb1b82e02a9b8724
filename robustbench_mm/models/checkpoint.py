"""Checkpoints: save ours as one self-describing file; load ours, TorchScript, factories, pickles.

Our file is a plain dict `{"format": "robustbench-mm", "config", "state_dict", "metrics"}` that
`torch.load(weights_only=True)` reads without running code; the config alone rebuilds the model.
Anything that would need code execution to unpickle is refused unless the caller passes
`trust=True` (the CLI's --trust-checkpoint), because a pickle can run arbitrary code.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import pickle
import pickletools
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_write
from ..errors import InputError
from .adapter import ExportedModule
from ..imports import working_directory_last
from ..version import __version__
from .base import Reencodable

FORMAT = "robustbench-mm"
CHECKPOINT_FORMATS = (FORMAT, "torchscript", "export", "factory", "pickle")  # what `LoadedModel.kind` can be
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_FACTORY_AT_WEIGHTS = re.compile(r"^([A-Za-z_][\w.]*:[A-Za-z_]\w*)@(.+)$")  # module:factory@weights.pt


@dataclass
class LoadedModel:
    """A model ready for evaluation plus what a manifest needs to identify it.

    kind : one of CHECKPOINT_FORMATS: "robustbench-mm" | "torchscript" | "export" | "factory" | "pickle".
    sha256 : of the checkpoint file (the weights file for a factory; of the spec without one).
    reencodable : the module has `encode`/`fuse`, so the engine may re-encode single modalities.
    weights : the state-dict file a factory model was loaded with (None: a file format, or random weights).
    identity : JSON-safe facts that belong to the run's identity beyond the weights: the SHA-256 of
        each Python source file that built or feeds the model (`sources`), a model card's fields
        (`card`). The engine records them in the manifest, so changed code is a different run.
    """

    module: nn.Module
    name: str
    config: dict
    sha256: str
    reencodable: bool
    kind: str
    source: str = ""
    metrics: dict = field(default_factory=dict)
    weights: str | None = None
    identity: dict = field(default_factory=dict)


def _plain(value):
    """Tensors to CPU, tuples to lists: what weights_only=True can read back."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "to_dict"):  # ModalitySpec
        return _plain(value.to_dict())
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint config")


def save_checkpoint(model: nn.Module, path: str | Path, config: dict | None = None, metrics: dict | None = None) -> Path:
    """Write `model` to `path` (whole or not at all: `atomic.atomic_write`) and return the path.

    config : extra metadata (dataset, split_seed, seed, training hyper-parameters...) merged over
        the model's own build config, so `load_model` can rebuild it with no other input.
    """
    path = Path(path)
    full = dict(getattr(model, "config", {}))
    full.update(config or {})
    full.setdefault("version", __version__)
    if "fusion" not in full or "specs" not in full:
        raise InputError("save_checkpoint: the config needs 'fusion' and 'specs' to rebuild the model")
    payload = {
        "format": FORMAT,
        "config": _plain(full),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metrics": _plain(metrics or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, buffer.getvalue())
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise InputError(f"file {path}: cannot read ({e.strerror or e})") from None
    return h.hexdigest()


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a `code/` folder and `constants.pkl`."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _export_root(names: list[str]) -> str | None:
    """The folder prefix of a `torch.export.save` archive (`<root>/archive_format`), or None."""
    for n in names:
        if n.endswith("/archive_format") and n.count("/") == 1:
            return n.split("/")[0] + "/"
    return None


def _is_export_archive(path: Path) -> bool:
    """`torch.export.save` writes a zip with `<root>/archive_format` and `<root>/models/<name>.json`."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return _export_root(z.namelist()) is not None
    except (zipfile.BadZipFile, OSError):
        return False


def _export_code_payloads(path: Path) -> list[str]:
    """Entries of a .pt2 archive that `torch.export.load` would unpickle with code execution allowed.

    The program itself is a JSON graph of registered torch operators, and plain weights are raw
    bytes; but torch's loader reads pickled tensors, sample inputs and custom objects with
    `weights_only=False` or `pickle.loads` (torch/export/pt2_archive/_package.py, `_load_state_dict`,
    `_load_constants`; torch/_export/serde/serialize.py, `deserialize_torch_artifact`). Each such
    entry that a weights-only load cannot read, and every custom or opaque object, is listed here.
    """
    import json

    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        root = _export_root(names) or ""
        suspicious: list[str] = []

        def weights_only_readable(name: str) -> bool:
            try:
                torch.load(io.BytesIO(z.read(name)), map_location="cpu", weights_only=True)
                return True
            except Exception:  # any failure: it needs more than a weights-only load
                return False

        for name in names:
            inner = name[len(root):]
            if inner.startswith("data/sample_inputs/") and not weights_only_readable(name):
                suspicious.append(inner)
            elif inner.startswith(("data/weights/", "data/constants/")) and inner.endswith(".pt"):
                suspicious.append(inner)  # the legacy layout: a whole pickled state dict
            elif inner.startswith(("data/weights/", "data/constants/")) and inner.endswith("_config.json"):
                folder = name.rsplit("/", 1)[0]
                for entry in json.loads(z.read(name)).get("config", {}).values():
                    member = f"{folder}/{entry.get('path_name', '')}"
                    if entry.get("path_name", "").startswith(("custom_obj_", "opaque_obj_")):
                        suspicious.append(member[len(root):])
                    elif entry.get("use_pickle") and not weights_only_readable(member):
                        suspicious.append(member[len(root):])
        return suspicious


def _load_export(path: Path, trust: bool, device: str) -> nn.Module:
    """A `torch.export` program as a module: its graph runs only registered torch operators."""
    try:
        unsafe = _export_code_payloads(path)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        raise InputError(f"torch.export file {path}: corrupt or truncated ({_clip(str(e) or type(e).__name__)})") from None
    if unsafe and not trust:
        raise InputError(
            f"torch.export file {path}: {', '.join(unsafe[:3])}{' ...' if len(unsafe) > 3 else ''} would be unpickled "
            "with code execution allowed; pass --trust-checkpoint only if you created or fully trust this file"
        )
    try:
        program = torch.export.load(str(path))
        module = program.module()
    except Exception as e:  # torch's deserialiser fails in many ways; the first line says which
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"torch.export file {path}: cannot be loaded ({_clip(first)})") from None
    _check_finite(module, f"torch.export file {path}")
    return ExportedModule(module).to(device)


def _is_valid_pickle(path: Path) -> bool:
    """Whether the file (or a torch zip archive's data.pkl) is a well-formed pickle stream.

    Called after a weights-only load failed: a well-formed pickle was refused because it needs
    code execution; anything else is a corrupt file.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        else:
            data = path.read_bytes()
        stream = io.BytesIO(data)
        ops = 0
        while stream.tell() < len(data):  # legacy torch.save files hold several pickles
            ops += sum(1 for _ in pickletools.genops(stream))
        return ops > 0
    except Exception:  # any parse failure means: not a pickle
        return False


def _clip(text: str, limit: int = 120) -> str:
    """`text` shortened at a word boundary (marked with "..."), never cut inside a word."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:") + " ..."


def _torch_load(path: Path, trust: bool, device: str):
    """torch.load with weights_only unless trusted; every failure becomes one InputError line."""
    try:
        return torch.load(path, map_location=device, weights_only=not trust)
    except pickle.UnpicklingError:
        if not trust and _is_valid_pickle(path):
            raise InputError(
                f"checkpoint {path}: contains pickled code objects that can execute arbitrary code when loaded; "
                "expected a robustbench-mm checkpoint, a TorchScript file or a state dict "
                "(pass --trust-checkpoint only if you created or fully trust this file)"
            ) from None
        raise InputError(f"checkpoint {path}: corrupt or truncated (cannot be unpickled); expected a torch.save file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, IndexError, OSError) as e:
        # the file was readable (it was hashed first), so an OSError here is a broken archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"checkpoint {path}: corrupt or truncated ({_clip(first)})") from None
    except (AttributeError, ModuleNotFoundError, ImportError) as e:  # trusted pickle of code we lack
        raise InputError(f"checkpoint {path}: pickled object needs code that is not importable here ({e})") from None


def _mismatch(model: nn.Module, state: dict) -> str:
    """Which keys and shapes differ between a model and a state dict, in whole words (at most a few
    of each, with the counts), instead of torch's message cut at a character count."""
    own = model.state_dict()

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)} in the model"
        for k in sorted(set(own) & set(state))
        if isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({some(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({some(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) ({some(shapes)})")
    return "; ".join(parts) or "the values could not be copied"


def _check_finite(module: nn.Module, where: str) -> None:
    """Refuse weights holding NaN/Inf at load: every output they touch would be NaN-cast."""
    for key, t in module.state_dict().items():
        if isinstance(t, torch.Tensor) and t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
            count = int((~torch.isfinite(t)).sum())
            raise InputError(f"{where}: weight {key!r} holds {count} NaN/Inf value(s); expected finite weights")


def _load_ours(obj: dict, path: Path, device: str) -> tuple[nn.Module, dict, dict]:
    from .fusion import build_model

    config, state = obj.get("config"), obj.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise InputError(f"checkpoint {path}: robustbench-mm file without a config or state_dict")
    model = build_model(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise InputError(
            f"checkpoint {path}: state dict does not match its config (fusion {config.get('fusion')!r}): {_mismatch(model, state)}"
        ) from None
    return model, config, obj.get("metrics") or {}


def import_module(module_name: str, folder: Path | None, what: str):
    """Import `module_name` for `what` (a model spec or card field, named in errors).

    folder : a model card's folder. When that folder holds the module (`name.py` or a package),
        the module is imported from there, and the folder is on sys.path only while it imports;
        otherwise the usual sys.path decides (the working directory importable, after the
        installed packages: `imports.working_directory_last`). A module of that name already imported from elsewhere is an error,
        not a silent use of the other file.
    """
    top = module_name.split(".")[0]
    local = None if folder is None else next(
        (p for p in (folder / f"{top}.py", folder / top / "__init__.py") if p.is_file()), None
    )
    try:
        if local is None:
            working_directory_last()
            return importlib.import_module(module_name)
        loaded = sys.modules.get(top)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() != local.resolve():
            raise InputError(
                f"{what}: module {top!r} is already imported from {getattr(loaded, '__file__', None) or 'a built-in'}, "
                f"not from {local}; give the module a name of its own"
            )
        sys.path.insert(0, str(folder))
        try:
            return importlib.import_module(module_name)
        finally:
            sys.path.remove(str(folder))
    except ImportError as e:
        raise InputError(f"{what}: cannot import module {module_name!r} ({e})") from None
    except InputError:
        raise
    except Exception as e:  # the user's module fails as it runs (SyntaxError, NameError...): one line
        raise InputError(f"{what}: importing module {module_name!r} failed ({type(e).__name__}: {_clip(str(e))})") from None


def source_sha256(module) -> str:
    """SHA-256 of the source file a module was imported from ("" for a module without one)."""
    path = getattr(module, "__file__", None)
    return _sha256(Path(path)) if path else ""


def split_factory_weights(spec: str) -> tuple[str, str | None]:
    """`module:factory@weights.pt` -> ("module:factory", "weights.pt"); anything else unchanged."""
    found = _FACTORY_AT_WEIGHTS.match(spec)
    return (found.group(1), found.group(2)) if found else (spec, None)


def is_factory_spec(spec: str) -> bool:
    """Whether a MODEL argument names `module:factory` (optionally `@weights`), not a file."""
    return not Path(spec).exists() and bool(_FACTORY.match(split_factory_weights(spec)[0]))


def _load_factory(spec: str, weights: str | None, trust: bool, device: str, random_weights: bool,
                  folder: Path | None = None) -> LoadedModel:
    module_name, attr = spec.split(":")
    module = import_module(module_name, folder, f"model {spec!r}")
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"model {spec!r}: module {module_name!r} has no callable {attr!r}")
    try:
        model = factory()
    except Exception as e:  # the user's factory failing: name it, in one line
        raise InputError(f"model {spec!r}: the factory raised {type(e).__name__}: {_clip(str(e))}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"model {spec!r}: factory returned {type(model).__name__}; expected a torch.nn.Module")
    digest = hashlib.sha256(spec.encode()).hexdigest()
    if weights is None and not random_weights:
        raise InputError(
            f"model {spec!r}: no --weights given, so it would be evaluated with the factory's random initial weights; "
            "pass --weights STATE_DICT.pt, or --random-weights if that is what you mean"
        )
    if weights is not None:
        wpath = Path(weights)
        if not wpath.is_file():
            raise InputError(f"weights file {weights}: no such file")
        wdigest = _sha256(wpath)
        state = _torch_load(wpath, trust, "cpu")
        if isinstance(state, dict) and state.get("format") == FORMAT:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise InputError(f"weights file {weights}: expected a state dict, found {type(state).__name__}")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError:
            raise InputError(f"weights file {weights}: does not match the model from {spec!r}: {_mismatch(model, state)}") from None
        _check_finite(model, f"weights file {weights}")
        digest = wdigest
    config = dict(getattr(model, "config", {}) or {})
    return LoadedModel(
        module=model.to(device).eval(),
        name=spec,
        config=config,
        sha256=digest,
        reencodable=isinstance(model, Reencodable),
        kind="factory",
        source=spec,
        weights=weights,
        identity={"sources": {module_name: source_sha256(module)}},
    )


def load_model(
    path_or_spec: str | Path,
    *,
    trust: bool = False,
    device: str = "cpu",
    weights: str | Path | None = None,
    random_weights: bool = False,
    name: str | None = None,
) -> LoadedModel:
    """Load a model for evaluation, in eval mode on `device`.

    path_or_spec : a robustbench-mm checkpoint, a TorchScript file, a `torch.export` program
        (`.pt2`), a model card (`.toml`, see `models.card`), `module:factory` (a function returning
        an nn.Module; the working directory is importable; weights from `module:factory@FILE` or
        `weights`, required unless random_weights=True says the factory's initial weights are
        meant), or, only with trust=True, a full pickle of an nn.Module.
    name : the model's name in cells, reports and baselines (default: the file's stem, or the
        `module:factory` text).
    Weights holding NaN/Inf are refused.
    """
    spec = str(path_or_spec)
    if spec.endswith(".toml"):
        from .card import load_card

        if weights is not None:
            raise InputError(f"--weights {weights}: the model card {spec} names its own weights (its `weights` field)")
        loaded = load_card(Path(spec), trust=trust, device=device, random_weights=random_weights)
    else:
        loaded = load_file_or_factory(spec, trust, device, weights, random_weights)
    if name is not None:
        loaded.name = str(name)
    return loaded


def load_file_or_factory(spec: str, trust: bool, device: str, weights: str | Path | None, random_weights: bool,
                         folder: Path | None = None) -> LoadedModel:
    """A model from a file (ours, TorchScript, .pt2, a trusted pickle) or a `module:factory[@weights]`.

    folder : a model card's folder, from which the factory's module is imported when it holds it.
    """
    path = Path(spec)
    if not path.exists():
        spec, at_weights = split_factory_weights(spec)
        if _FACTORY.match(spec):
            if at_weights is not None and weights is not None:
                raise InputError(f"model {spec!r}: weights given twice ({at_weights} after '@' and --weights {weights}); give one")
            chosen = at_weights if at_weights is not None else weights
            return _load_factory(spec, None if chosen is None else str(chosen), trust, device, random_weights, folder)
    if weights is not None:
        raise InputError(f"--weights {weights}: only used with a module:factory model, not with the file {spec}")
    if not path.exists():
        raise InputError(f"checkpoint {spec}: no such file; expected a checkpoint path or module:factory")
    if not path.is_file():
        raise InputError(f"checkpoint {spec}: not a file")
    digest = _sha256(path)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                # torch 2.13 deprecates torch.jit.load in favour of torch.export; the user's file is
                # what it is, so the warning is not theirs to act on here (docs/models.md says how
                # to export a .pt2 instead)
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning)
                module = torch.jit.load(str(path), map_location=device)
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"TorchScript file {path}: cannot be loaded ({_clip(first)})") from None
        _check_finite(module, f"TorchScript file {path}")
        return LoadedModel(module.eval(), path.stem, {}, digest, False, "torchscript", source=spec)
    if _is_export_archive(path):
        return LoadedModel(_load_export(path, trust, device), path.stem, {}, digest, False, "export", source=spec)
    obj = _torch_load(path, trust, "cpu")
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        model, config, metrics = _load_ours(obj, path, device)
        _check_finite(model, f"checkpoint {path}")
        return LoadedModel(
            model.to(device).eval(), path.stem, config, digest, isinstance(model, Reencodable), FORMAT, spec, metrics
        )
    if isinstance(obj, nn.Module):  # only reachable with trust=True
        config = dict(getattr(obj, "config", {}) or {})
        _check_finite(obj, f"checkpoint {path}")
        return LoadedModel(obj.to(device).eval(), path.stem, config, digest, isinstance(obj, Reencodable), "pickle", spec)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(
            f"checkpoint {path}: a bare state dict without an architecture; "
            "load it as MODULE:FACTORY with --weights pointing at this file"
        )
    raise InputError(
        f"checkpoint {path}: holds a {type(obj).__name__}; expected a robustbench-mm checkpoint, "
        "a TorchScript file or a state dict for --weights"
    )
