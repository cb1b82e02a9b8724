"""Model cards: a small TOML file that stands wherever a MODEL goes (`rbmm eval models/av.toml`).

    factory = "mymodels:build_av"        # or: file = "av.pt2" | "av.ts" | a checkpoint of ours
    weights = "av_state.pt"              # with factory; relative to the card
    inputs = ["audio", "visual"]         # positional order; or {audio = "a", visual = "v"} (keywords)
    output = 2                           # tuple index, or a dict key such as "logits"
    name = "av"                          # optional; default: the card's file stem
    [preprocess]                         # module:function per modality, run on device after the perturbation
    audio = "mymodels:log_spectrogram"

Paths are relative to the card's folder, and a module the card names is imported from that
folder when it holds it (else from the working directory or the installed packages). The card's
fields and the SHA-256 of every module source file it names go into the run's manifest, so a
changed card or changed code is a different run. A card with none of inputs/output/preprocess
loads the model as it is (our checkpoints keep their encode/fuse fast path).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Callable

from ..errors import InputError
from .adapter import Adapter, parse_inputs, parse_output
from .checkpoint import LoadedModel, _sha256, import_module, load_file_or_factory, source_sha256

CARD_FIELDS = ("name", "factory", "file", "weights", "inputs", "output", "preprocess")
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # as `rbmm eval NAME=MODEL`: names cells and files


def load_preprocess(table: object, folder: Path | None, where: str) -> tuple[dict[str, Callable], dict[str, str]]:
    """{modality: "module:function"} -> ({modality: function}, {module: source SHA-256})."""
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise InputError(f"{where}: preprocess {table!r}; expected a table modality = \"module:function\"")
    functions, sources = {}, {}
    for modality, spec in table.items():
        if not _FUNCTION.match(spec):
            raise InputError(f"{where}: preprocess {modality} = {spec!r}; expected \"module:function\"")
        module_name, attr = spec.split(":")
        module = import_module(module_name, folder, f"{where}: preprocess {modality}")
        function = getattr(module, attr, None)
        if not callable(function):
            raise InputError(f"{where}: preprocess {modality}: module {module_name!r} has no callable {attr!r}")
        functions[modality] = function
        sources[module_name] = source_sha256(module)
    return functions, sources


def adapt(loaded: LoadedModel, inputs: object = None, output: object = None, preprocess: object = None,
          folder: Path | None = None, where: str = "") -> LoadedModel:
    """`loaded` behind an Adapter (inputs map, output selector, preprocessing), the sources recorded.

    With none of the three the model is returned unchanged (and keeps its encode/fuse fast path).
    """
    where = where or f"model {loaded.name!r}"
    inputs, output = parse_inputs(inputs, where), parse_output(output, where)
    functions, sources = load_preprocess(preprocess, folder, where) if preprocess is not None else ({}, {})
    if inputs is None and output is None and not functions:
        return loaded
    loaded.module = Adapter(loaded.module, loaded.name, inputs, output, functions).eval()
    loaded.reencodable = False  # the adapter's preprocessing sits before the encoders
    if functions:  # the model's own specs describe what it reads, not the raw signal the data holds
        loaded.config = {k: v for k, v in loaded.config.items() if k != "specs"}
    stated = {"inputs": inputs if not isinstance(inputs, tuple) else list(inputs), "output": output, "preprocess": preprocess}
    loaded.identity = {
        **loaded.identity,
        "sources": {**loaded.identity.get("sources", {}), **sources},
        "adapter": {k: v for k, v in stated.items() if v is not None},
    }
    return loaded


def read_card(path: Path) -> dict:
    """The card's TOML table, its fields checked (one-line errors naming the card)."""
    if not path.is_file():
        raise InputError(f"model card {path}: no such file")
    try:
        card = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"model card {path}: not valid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"model card {path}: cannot read ({e})") from None
    unknown = [k for k in card if k not in CARD_FIELDS]
    if unknown:
        raise InputError(f"model card {path}: unknown field {unknown[0]!r}; expected fields: {', '.join(CARD_FIELDS)}")
    if ("factory" in card) == ("file" in card):
        raise InputError(f"model card {path}: give exactly one of `factory = \"module:function\"` or `file = \"model file\"`")
    for key in ("name", "factory", "file", "weights"):
        if key in card and not (isinstance(card[key], str) and card[key]):
            raise InputError(f"model card {path}: {key} {card[key]!r}; expected a non-empty string")
    if "weights" in card and "file" in card:
        raise InputError(f"model card {path}: weights is for a factory; the file {card['file']!r} holds its own")
    if "factory" in card and not _FUNCTION.match(card["factory"]):
        raise InputError(f"model card {path}: factory {card['factory']!r}; expected \"module:function\"")
    if "name" in card and not _NAME.match(card["name"]):
        raise InputError(f"model card {path}: name {card['name']!r}; expected letters, digits and . _ + - (it names cells and files)")
    return card


def load_card(path: Path, *, trust: bool = False, device: str = "cpu", random_weights: bool = False) -> LoadedModel:
    """The model a card describes, adapted as it says, named by it (or by the card's file stem)."""
    card = read_card(path)
    folder = path.resolve().parent
    where = f"model card {path}"
    if "factory" in card:
        weights = None if "weights" not in card else str(folder / card["weights"])
        if weights is not None and not Path(weights).is_file():
            raise InputError(f"{where}: weights file {card['weights']!r} not found next to the card ({weights})")
        loaded = load_file_or_factory(card["factory"], trust, device, weights, random_weights, folder)
    else:
        target = folder / card["file"]
        if not target.is_file():
            raise InputError(f"{where}: file {card['file']!r} not found next to the card ({target})")
        loaded = load_file_or_factory(str(target), trust, device, None, False)
    loaded.name = card.get("name", path.stem)
    loaded = adapt(loaded, card.get("inputs"), card.get("output"), card.get("preprocess"), folder, where)
    loaded.identity = {**loaded.identity, "card": card, "card_sha256": _sha256(path)}
    return loaded
