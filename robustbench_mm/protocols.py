"""Protocols: declarative TOML files that expand into the grid of `Condition`s a run evaluates.

A protocol is named by a path or a name: the shipped ones (`robustbench_mm/protocols/*.toml`,
package data, linked from the top-level `protocols/` folder) come first, then `NAME.toml` in the
working directory's `protocols/` folder (the user's own). A protocol file holds:

    name = "quick"                 # how `rbmm eval --protocol` and `rbmm show protocol` name it
    description = "..."            # first line is the summary `rbmm list protocols` prints
    seed = 0                       # base seed of every perturbation (common random numbers)
    seeds = [0]                    # optional: evaluation seed offsets repeated by default
    metrics = ["accuracy", "nll"]  # metric columns a report should lead with

    [[corruption]]                 # registered corruptions x target modalities x levels
    group = "noise"                # label for reports (defaults to the table's kind)
    corruptions = ["gaussian_noise"]   # or "all", or "kind:image"
    targets = ["each"]             # modality names, "kind:image" or "each" (one modality at a time);
                                   # a nested list ["a", "b"] corrupts those modalities together
    levels = [1, 3, 5]             # severities 0-5 (floats interpolate the corruption's table)
    # params = [0.1, 0.2]          # or raw parameters in the corruption's own units (presets)
    # param_levels = [5, 10]       # with params: the level numbers reports show (default 1..n)
    rates = [1.0]                  # fraction of samples affected (per-sample, common random numbers)

    [[removal]]                    # modalities removed and filled
    subsets = "leave-one-out"      # "all" (every non-empty proper subset), "keep-one", or [["a"], ["a", "b"]]
    fills = ["zero", "mean"]       # zero | mean | noise | mask
    rates = [1.0]

    [[conflict]]                   # a modality replaced by that of a different-class sample
    targets = ["each"]
    rates = [0.1, 0.5]

    [[condition]]                  # a condition family of a plug-in or package (`@condition_family`)
    family = "swap_halves"         # a registered family (a miss lists them)
    name = "swap_halves"           # optional (default: the family): the cells' `name` column
    targets = ["each"]
    levels = [1, 3]                # optional (default [0]): severities 0-5 the family reads
    rates = [1.0]

    [[joint]]                      # several corruptions applied together in one condition
    group = "qmf"
    levels = [5, 10]               # the level number of each condition (reports); any numbers
    rates = [0.5]                  # fraction of samples each modality is perturbed in
    masks = "independent"          # each modality its own per-sample mask, or "shared": one mask
    [[joint.part]]                 # one corruption on the modalities `targets` selects
    corruption = "gaussian_noise"
    targets = "kind:image"         # a modality name, a list of names, or "kind:KIND"
    params = [0.196, 0.392]        # one per level, in the corruption's own units
    pixel_max = 255                # optional: the kernel runs on raw pixels in [0, 255] (see below)
    options = { channels = "shared", overflow = "wrap" }  # optional keyword options of the kernel
    noise = "shared"               # optional: one noise field for all the part's modalities
    rates = [0.025, 0.05]          # optional: this part's own fraction of samples, one per level
    # spectrogram = "natural-log"  # optional: its modalities must be stated natural-log magnitudes (below)
    clipped = { overflow = "clip", pattern = "per-sample" }  # optional: used by NAME:clipped only

A part with `pixel_max` is defined in raw pixel units: its modalities are mapped to [0, pixel_max]
before the kernel and back after it, from the normalisation the user gives
(`Protocol.with_normalization`, `rbmm ... --normalization MEAN,STD`: x = (raw / pixel_max - mean) / std)
or else from the modality's value range (`--value-range LO,HI` when the file does not say); with
neither, the protocol refuses to expand instead of guessing. `Protocol.units(specs)` says what
was applied. A part with `spectrogram = "natural-log"` reads its modalities as log(|STFT| + 1e-7): the user states
that they are (`Protocol.with_spectrogram`, `rbmm ... --spectrogram natural-log`), else the
protocol refuses to expand; a dB or standardised spectrogram would silently get another strength.
A stated vocabulary (`Protocol.with_vocab`, `--vocab vocab.txt`) fills the `vocab` option of the
parts whose kernel takes one (blank: whole words to '_', as QMF) unless the part sets it.
A part's `rates` replace the joint's for that part (QMF's salt-and-pepper: image on
0.5 x level/100 of the samples, text on 0.5); the joint's `rates` serve the other parts. A protocol
loaded as `NAME:clipped` merges every part's `clipped` table into its options (the paper presets:
noise drawn per sample and clipped at both ends instead of the originals' fixed field and uint8
wrap) and says so in its name and hash; the protocol's `clipped` key describes what that changes.
The presets reproduce their originals by default, so `NAME:faithful` is refused with a line that
says so.

`Protocol.expand(specs)` turns this into Conditions, clean first. A corruption that does not
apply to a modality's kind is skipped with a note when the target was chosen by kind or `each`,
and is an error when the modality was named explicitly. The same condition twice (a repeated
entry, or two tables producing it) is an error, as are unknown metrics and `params` that are NaN
or absurd (a valid input of every kind the corruption claims comes out non-finite, or it raises).

Plug-in corruptions a protocol can select (named, or matched by "all"/"kind:K" when it is read)
are part of what it means: `Protocol.plugins` lists them (name, source, SHA-256 of the file) and
they enter its hash, so the same file read with other plug-ins loaded has another hash. So do the
condition families from outside the package that its [[condition]] tables name ("family:NAME").
A built-in kernel whose output bits changed on purpose carries a `revision` above 1
(`CorruptionSpec.revision`); the revisions of those a protocol can select enter its hash too, so a
run begun with the earlier kernel is refused on resume instead of mixing cells of both.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .corruptions import (
    CLEAN, CONDITION_FAMILIES, FILLS, SUBSET_SHORTCUTS, Condition, get_corruption, get_family, list_corruptions,
    removal_subsets,
)
from .corruptions.condition import MASKS, Part
from .corruptions.imagenet_c import suite_lines
from .corruptions.plugins import example_input, family_records, plugin_records, rejection_note
from .corruptions.rng import SampleRandom
from .datasets.batch import KINDS, ModalitySpec
from .domain import Family
from .errors import InputError
from .metrics import METRICS
from .protocol_files import builtin_dir as _builtin_dir, list_protocols, local_dir as _local_dir, names as _names
from .protocol_files import read_text as _read_text
from .registry import BUILTIN

_TABLES = ("corruption", "removal", "conflict", "condition", "joint")  # the grid's tables, expanded in this order
_TOP_KEYS = {"name", "description", "clipped", "seed", "seeds", "metrics", *_TABLES}
_GROUP_KEYS = {
    "corruption": {"group", "corruptions", "targets", "levels", "params", "param_levels", "rates"},
    "removal": {"group", "subsets", "fills", "rates"},
    "conflict": {"group", "targets", "rates"},
    "condition": {"group", "family", "name", "targets", "levels", "rates"},
    "joint": {"group", "levels", "rates", "masks", "part"},
}
_PART_KEYS = {"corruption", "targets", "params", "pixel_max", "spectrogram", "options", "noise", "rates", "clipped"}
SPECTROGRAM_SCALES = ("natural-log",)  # what a part's `spectrogram` key may ask the user to confirm
CLIPPED_SUFFIX = ":clipped"
_RETIRED_SUFFIX = ":faithful"  # the presets are faithful by default now


def load_protocol(name_or_path: str | Path) -> "Protocol":
    """A shipped protocol by name (`quick`, `standard`, ...) or a TOML file by path; either with
    the suffix `:clipped` loads the protocol's cleaned variant (see the module docstring)."""
    text = str(name_or_path)
    if text.endswith(_RETIRED_SUFFIX) and not Path(text).exists():
        base = text[: -len(_RETIRED_SUFFIX)]
        raise InputError(f"protocol {text!r}: {base!r} reproduces the original code by default now; "
                         f"expected {base!r} (or {base + CLIPPED_SUFFIX!r} for noise drawn per sample and clipped)")
    if text.endswith(CLIPPED_SUFFIX) and not Path(text).exists():
        return _clipped(load_protocol(text[: -len(CLIPPED_SUFFIX)]))
    path = Path(text)
    if text.endswith(".toml") or path.exists():
        if not path.is_file():
            raise InputError(f"protocol file {text!r} does not exist")
        return parse_protocol(_read_text(path, str(path)), source=str(path))
    if text in _names(_builtin_dir()):
        resource = _builtin_dir() / f"{text}.toml"
        return parse_protocol(_read_text(resource, f"{text}.toml"), source=f"{text}.toml")
    if text in _names(_local_dir()):
        local = _local_dir() / f"{text}.toml"
        return parse_protocol(_read_text(local, str(local)), source=str(local))
    raise InputError(f"unknown protocol {text!r}; expected a .toml path or one of: {', '.join(list_protocols())}")


def parse_protocol(text: str, source: str = "<string>") -> "Protocol":
    """Validate TOML text into a Protocol; errors name `source`, the key and what was expected."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"protocol {source}: not valid TOML: {e}") from None
    err = _Errors(source)
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise err(unknown[0], f"a known key ({', '.join(sorted(_TOP_KEYS))})", unknown[0])
    for key in ("name", "description"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise err(key, "a non-empty string", doc.get(key))
    seed = doc.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise err("seed", "an integer", seed)
    seeds = doc.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise err("seeds", "a non-empty list of integers", seeds)
    if len(set(seeds)) != len(seeds):
        raise err("seeds", "distinct integers", seeds)
    metrics = doc.get("metrics", ["accuracy"])
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise err("metrics", "a non-empty list of metric names", metrics)
    if "clipped" in doc and (not isinstance(doc["clipped"], str) or not doc["clipped"].strip()):
        raise err("clipped", "a non-empty string (what the protocol's :clipped variant changes)", doc["clipped"])
    unknown_metric = next((m for m in metrics if m not in METRICS), None)
    if unknown_metric is not None:
        raise err("metrics", f"metric names from {', '.join(METRICS)}", unknown_metric)
    _distinct(metrics, "metrics", err)
    groups: list[dict] = []
    for kind in _TABLES:
        tables = doc.get(kind, [])
        if not isinstance(tables, list):
            raise err(kind, f"an array of tables ([[{kind}]])", tables)
        for i, table in enumerate(tables):
            groups.append(_check_group(kind, i, table, err))
    selectable = _selectable_corruptions(groups)
    plugins = (plugin_records(sorted(s.name for s in selectable if s.source != BUILTIN))
               + family_records(_foreign_families(groups)))
    revisions = {s.name: s.revision for s in selectable if s.source == BUILTIN and s.revision > 1}
    content = {"name": doc["name"], "seed": seed, "seeds": seeds, "metrics": metrics, "groups": groups}
    if plugins:  # only then: a protocol of built-ins keeps the hash it always had
        content["plugins"] = [{"name": p["name"], "sha256": p["sha256"]} for p in plugins]
    if revisions:  # likewise: only a protocol that can select a revised built-in kernel changes hash
        content["revisions"] = revisions
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return Protocol(
        name=doc["name"],
        description=doc["description"].strip(),
        seed=seed,
        seeds=tuple(seeds),
        metrics=tuple(metrics),
        groups=tuple(groups),
        source=source,
        hash=hashlib.sha256(canonical.encode()).hexdigest(),
        clipped_note=doc.get("clipped", "").strip(),
        plugins=tuple(plugins),
    )


def _rehash(protocol: "Protocol", change: str) -> str:
    """A variant's hash: the base hash and what the variant changes."""
    return hashlib.sha256(f"{protocol.hash}|{change}".encode()).hexdigest()


def _clipped(protocol: "Protocol") -> "Protocol":
    """The protocol with every joint part's `clipped` table merged into its options."""
    parts = [p for g in protocol.groups if g["kind"] == "joint" for p in g["parts"] if p["clipped"]]
    if not parts:
        raise InputError(f"protocol {protocol.source}: has no clipped variant (no joint part declares 'clipped')")
    groups = []
    for g in protocol.groups:
        if g["kind"] == "joint":
            g = dict(g, parts=[dict(p, options={**p["options"], **p["clipped"]}) for p in g["parts"]])
        groups.append(g)
    return replace(
        protocol, name=protocol.name + CLIPPED_SUFFIX, groups=tuple(groups), hash=_rehash(protocol, "clipped"),
        description=protocol.description + "\nClipped variant: " + (protocol.clipped_note or "every part's clipped options."),
    )


def _foreign_families(groups: list[dict]) -> list[str]:
    """Names of the condition families from outside the package that the [[condition]] tables name."""
    named = {g["family"] for g in groups if g["kind"] == "condition"}
    return sorted(n for n in named if CONDITION_FAMILIES.source(n) != BUILTIN)


def _selectable_corruptions(groups: list[dict]) -> list:
    """The registered corruptions (built-in and plug-in) the corruption and joint tables can select."""
    specs: dict[str, object] = {}
    for g in groups:
        if g["kind"] == "joint":
            chosen = [get_corruption(p["corruption"]) for p in g["parts"]]
        elif g["kind"] == "corruption":
            chosen = _chosen(g["corruptions"])
        else:
            continue
        specs.update((s.name, s) for s in chosen)
    return [specs[name] for name in sorted(specs)]


def _chosen(names: str | list[str]) -> list:
    """The corruptions a [[corruption]] table names: "all" and "kind:K" take the catalog
    (`CorruptionSpec.catalog`), a list takes exactly the names given."""
    if isinstance(names, str):
        return [s for s in list_corruptions(None if names == "all" else names[5:]) if s.catalog]
    return [get_corruption(n) for n in names]


def _distinct(values: list, key: str, err: "_Errors") -> None:
    """A repeated entry would evaluate the same condition twice: name it."""
    seen = []
    for v in values:
        if v in seen:
            raise err(key, "distinct entries (each condition once)", v)
        seen.append(v)


def _check_params(names: list[str], params: list[float], key: str, err: "_Errors") -> None:
    """Refuse NaN, and parameters under which a valid input of a claimed kind comes out non-finite
    (or the corruption raises): such a protocol would run and report NaN-cast metrics."""
    for p in params:
        if math.isnan(p):
            raise err(key, "numbers in the corruption's own units (not NaN)", p)
    for name in names:
        spec = get_corruption(name)
        for kind in spec.kinds:
            x, mspec = example_input(kind, spec.check)
            if spec.check is not None and spec.check(mspec):
                continue
            for p in params:
                try:
                    y = spec(x, p, SampleRandom(torch.arange(x.shape[0]), 0, "protocol-check"), mspec)
                    finite = bool(torch.isfinite(y.double()).all())
                except Exception as e:  # noqa: BLE001 - the corruption refused the value
                    raise err(key, f"a parameter {name!r} accepts ({spec.unit}; levels 1-5: "
                              f"{', '.join(f'{v:g}' for v in spec.table(kind))}); it raised {type(e).__name__}: {e}", p) from None
                if not finite:
                    raise err(key, f"a parameter under which {name!r} keeps a {kind} input finite ({spec.unit}; levels 1-5: "
                              f"{', '.join(f'{v:g}' for v in spec.table(kind))})", p)


class _Errors:
    """Builds InputErrors that name the file, the key and what was expected."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, key: str, expected: str, got: object) -> InputError:
        return InputError(f"protocol {self.source}: key {key!r}: expected {expected}, got {got!r}")


def _number_list(value: object, key: str, err: _Errors, lo: float, hi: float, lo_open: bool = False) -> list[float]:
    what = f"a non-empty list of numbers in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if not isinstance(value, list) or not value:
        raise err(key, what, value)
    for v in value:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (lo < v if lo_open else lo <= v) or v > hi:
            raise err(key, what, v)
    _distinct(value, key, err)
    return [float(v) for v in value]


def _targets(value: object, key: str, err: _Errors) -> list:
    """A list of selectors: "each", "kind:K", a name, or a list of names (joint target)."""
    if isinstance(value, str):
        value = [value]
    what = 'a list of modality names, "kind:KIND", "each", or lists of names'
    if not isinstance(value, list) or not value:
        raise err(key, what, value)
    for t in value:
        if isinstance(t, list):
            if not t or not all(isinstance(m, str) for m in t):
                raise err(key, what, t)
        elif not isinstance(t, str):
            raise err(key, what, t)
        elif t.startswith("kind:") and t[5:] not in KINDS:
            raise err(key, f"a modality kind after 'kind:' ({', '.join(KINDS)})", t)
    return value


def _check_group(kind: str, index: int, table: object, err: _Errors) -> dict:
    where = f"{kind}[{index}]"
    if not isinstance(table, dict):
        raise err(where, "a table", table)
    unknown = sorted(set(table) - _GROUP_KEYS[kind])
    if unknown:
        raise err(f"{where}.{unknown[0]}", f"one of {', '.join(sorted(_GROUP_KEYS[kind]))}", unknown[0])
    group = table.get("group", kind)
    if not isinstance(group, str) or not group:
        raise err(f"{where}.group", "a non-empty string", group)
    out: dict = {"kind": kind, "group": group, "where": where}
    out["rates"] = _number_list(table.get("rates", [1.0]), f"{where}.rates", err, 0.0, 1.0, lo_open=True)
    if kind == "joint":
        return _check_joint(table, out, err)
    if kind == "corruption":
        names = table.get("corruptions")
        if isinstance(names, str):
            if names != "all" and not names.startswith("kind:"):
                names = [names]
        if isinstance(names, str):
            if names.startswith("kind:") and names[5:] not in KINDS:
                raise err(f"{where}.corruptions", f"a kind after 'kind:' ({', '.join(KINDS)})", names)
        elif not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise err(f"{where}.corruptions", 'a list of corruption names, "all" or "kind:KIND"', names)
        else:
            for n in names:
                try:
                    get_corruption(n)
                except InputError as e:
                    raise InputError(f"protocol {err.source}: key {where + '.corruptions'!r}: {e}{rejection_note(n)}") from None
            _distinct(names, f"{where}.corruptions", err)
        out["corruptions"] = names
        out["targets"] = _targets(table.get("targets", "each"), f"{where}.targets", err)
        if ("levels" in table) == ("params" in table):
            raise err(where, "exactly one of 'levels' or 'params'", sorted(k for k in ("levels", "params") if k in table))
        if "levels" in table:
            out["levels"] = _number_list(table["levels"], f"{where}.levels", err, 0.0, 5.0)
        else:
            params = table["params"]
            if not isinstance(params, list) or not params or not all(
                isinstance(p, (int, float)) and not isinstance(p, bool) for p in params
            ):
                raise err(f"{where}.params", "a non-empty list of numbers (the corruption's own units)", params)
            shown = table.get("param_levels", list(range(1, len(params) + 1)))
            if not isinstance(shown, list) or len(shown) != len(params) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in shown
            ):
                raise err(f"{where}.param_levels", f"a list of {len(params)} numbers (one per param)", shown)
            _distinct(params, f"{where}.params", err)
            _distinct(shown, f"{where}.param_levels", err)
            out["params"] = [float(p) for p in params]
            out["param_levels"] = [float(v) for v in shown]
            if isinstance(names, list):
                _check_params(names, out["params"], f"{where}.params", err)
    elif kind == "removal":
        subsets = table.get("subsets", "all")
        if isinstance(subsets, str):
            if subsets not in SUBSET_SHORTCUTS:
                raise err(f"{where}.subsets", f"one of {', '.join(SUBSET_SHORTCUTS)} or a list of lists of names", subsets)
        elif not isinstance(subsets, list) or not subsets or not all(
            isinstance(s, list) and s and all(isinstance(m, str) for m in s) for s in subsets
        ):
            raise err(f"{where}.subsets", f"one of {', '.join(SUBSET_SHORTCUTS)} or a list of lists of names", subsets)
        if isinstance(subsets, list):
            _distinct([sorted(s) for s in subsets], f"{where}.subsets", err)
        out["subsets"] = subsets
        fills = table.get("fills", ["zero"])
        if isinstance(fills, str):
            fills = [fills]
        if not isinstance(fills, list) or not fills or any(f not in FILLS for f in fills):
            raise err(f"{where}.fills", f"a list of fills from {', '.join(FILLS)}", fills)
        _distinct(fills, f"{where}.fills", err)
        out["fills"] = fills
    elif kind == "condition":
        _check_condition(table, out, err)
    else:
        out["targets"] = _targets(table.get("targets", "each"), f"{where}.targets", err)
    return out


def _check_condition(table: dict, out: dict, err: _Errors) -> None:
    """A [[condition]] table: its family resolved through the registry (a miss lists the families)."""
    where = out["where"]
    name = table.get("family")
    if not isinstance(name, str) or not name:
        raise err(f"{where}.family", "the name of a registered condition family", name)
    try:
        family = get_family(name)
    except InputError as e:
        raise InputError(f"protocol {err.source}: key {where + '.family'!r}: {e}") from None
    if not family.perturbs:
        raise err(f"{where}.family", f"a family that perturbs inputs ({name!r} is in every grid already)", name)
    label = table.get("name", name)
    if not isinstance(label, str) or not label:
        raise err(f"{where}.name", "a non-empty string", label)
    out["family"], out["name"] = name, label
    out["targets"] = _targets(table.get("targets", "each"), f"{where}.targets", err)
    out["levels"] = _number_list(table.get("levels", [0.0]), f"{where}.levels", err, 0.0, 5.0)


def _check_joint(table: dict, out: dict, err: _Errors) -> dict:
    where = out["where"]
    levels = table.get("levels")
    if not isinstance(levels, list) or not levels or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels):
        raise err(f"{where}.levels", "a non-empty list of numbers (the level of each condition)", levels)
    out["levels"] = [float(v) for v in levels]
    masks = table.get("masks", "independent")
    if masks not in MASKS:
        raise err(f"{where}.masks", f"one of {', '.join(MASKS)}", masks)
    out["masks"] = masks
    parts = table.get("part")
    if not isinstance(parts, list) or not parts:
        raise err(f"{where}.part", "an array of tables ([[joint.part]]), at least one", parts)
    out["parts"] = [_check_part(p, f"{where}.part[{i}]", len(levels), err) for i, p in enumerate(parts)]
    return out


def _kernel_options(name: str) -> list[str]:
    """The keyword options a corruption's kernel takes after (x, param, rng, spec)."""
    return [k for k in inspect.signature(get_corruption(name).fn).parameters][4:]


def _check_part(part: object, where: str, n_levels: int, err: _Errors) -> dict:
    if not isinstance(part, dict):
        raise err(where, "a table", part)
    unknown = sorted(set(part) - _PART_KEYS)
    if unknown:
        raise err(f"{where}.{unknown[0]}", f"one of {', '.join(sorted(_PART_KEYS))}", unknown[0])
    name = part.get("corruption")
    if not isinstance(name, str):
        raise err(f"{where}.corruption", "a corruption name", name)
    try:
        get_corruption(name)  # a miss lists the registered names
    except InputError as e:
        raise InputError(f"protocol {err.source}: key {where + '.corruption'!r}: {e}") from None
    out = {"corruption": name, "targets": _targets(part.get("targets"), f"{where}.targets", err)}
    params = part.get("params")
    if not isinstance(params, list) or len(params) != n_levels or not all(
        isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) for p in params
    ):
        raise err(f"{where}.params", f"a list of {n_levels} finite numbers (one per level, the corruption's own units)", params)
    out["params"] = [float(p) for p in params]
    pixel_max = part.get("pixel_max")
    if pixel_max is not None and (not isinstance(pixel_max, (int, float)) or isinstance(pixel_max, bool) or not pixel_max > 0):
        raise err(f"{where}.pixel_max", "a positive number (the raw value of a white pixel, e.g. 255)", pixel_max)
    out["pixel_max"] = None if pixel_max is None else float(pixel_max)
    if "spectrogram" in part:
        if part["spectrogram"] not in SPECTROGRAM_SCALES:
            raise err(f"{where}.spectrogram", f"one of {', '.join(SPECTROGRAM_SCALES)} (the scale the kernel reads)", part["spectrogram"])
        out["spectrogram"] = part["spectrogram"]
    accepted = _kernel_options(name)
    for key in ("options", "clipped"):
        table = part.get(key, {})
        if not isinstance(table, dict):
            raise err(f"{where}.{key}", "a table of kernel options", table)
        for k, v in table.items():
            if k not in accepted:
                raise err(f"{where}.{key}.{k}", f"an option of {name!r} ({', '.join(accepted) or 'it takes none'})", k)
            elif not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise err(f"{where}.{key}.{k}", "a string or a number", v)
        out[key] = dict(sorted(table.items()))
    noise = part.get("noise", "per-modality")
    if noise not in ("per-modality", "shared"):
        raise err(f"{where}.noise", "per-modality or shared", noise)
    out["noise"] = noise
    if "rates" in part:
        rates = part["rates"]
        if not isinstance(rates, list) or len(rates) != n_levels or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and 0.0 < r <= 1.0 for r in rates
        ):
            raise err(f"{where}.rates", f"a list of {n_levels} fractions in (0, 1] (this part's rate at each level)", rates)
        out["rates"] = [float(r) for r in rates]
    return out


@dataclass(frozen=True)
class Protocol:
    """A validated protocol; `expand(specs)` gives its grid on one dataset.

    seeds : default evaluation seed offsets (the randomness seed of a cell is `seed + offset`).
    hash : SHA-256 of the canonical content (name, seeds, metrics, groups), not of the file's text,
        so comments and formatting do not invalidate earlier results.
    """

    name: str
    description: str
    seed: int
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    groups: tuple[dict, ...] = field(repr=False)
    source: str
    hash: str
    clipped_note: str = ""
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    spectrogram: str | None = None
    vocab: str | None = None

    def with_normalization(self, mean: tuple[float, ...], std: tuple[float, ...]) -> "Protocol":
        """The protocol for images normalised as x = (raw / pixel_max - mean) / std (per channel
        or one value), which is how its raw-pixel parts map them back (it changes the hash)."""
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if not mean or not std or not all(math.isfinite(v) for v in mean + std) or not all(v > 0 for v in std):
            raise InputError(f"normalization mean {mean}, std {std}: expected finite numbers, std > 0")
        return replace(self, normalization=(mean, std), hash=_rehash(self, f"normalization={mean},{std}"))

    def with_spectrogram(self, scale: str) -> "Protocol":
        """The protocol for data whose spectrogram modalities the user states are of this scale
        (`natural-log`: log(|STFT| + 1e-7)), which parts with a `spectrogram` key require."""
        if scale not in SPECTROGRAM_SCALES:
            raise InputError(f"spectrogram scale {scale!r}: expected one of: {', '.join(SPECTROGRAM_SCALES)}")
        return replace(self, spectrogram=scale, hash=_rehash(self, f"spectrogram={scale}"))

    def with_vocab(self, path: str | Path) -> "Protocol":
        """The protocol whose joint parts with a `vocab` kernel option (blank) read this BERT-style
        vocab.txt: QMF's blanking per whole word to '_'. The hash takes the file's content."""
        path = Path(path)
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            raise InputError(f"--vocab {str(path)!r}: cannot read ({e.strerror or e}); expected a BERT-style vocab.txt") from None
        return replace(self, vocab=str(path), hash=_rehash(self, f"vocab={digest}"))

    def units(self, specs: dict[str, ModalitySpec]) -> list[str]:
        """One line per modality of a raw-pixel or spectrogram part: the units actually applied."""
        lines = []
        for g in self.groups:
            if g["kind"] != "joint":
                continue
            for part in g["parts"]:
                if part["pixel_max"] is None and "spectrogram" not in part:
                    continue
                for m in self._part_modalities(g, part, specs, []):
                    if "spectrogram" in part:
                        self._check_spectrogram(g, part, m)
                        lines.append(f"{g['where']} {part['corruption']} on {m!r}: {part['spectrogram']} magnitude spectrogram, as stated")
                        continue
                    _, why = self._to_raw(g, part, specs[m])
                    lines.append(f"{g['where']} {part['corruption']} on {m!r}: raw pixels [0, {part['pixel_max']:g}] {why}")
        return lines + suite_lines(self._named_corruptions(), specs)

    def _check_spectrogram(self, g: dict, part: dict, modality: str) -> None:
        """A part that reads natural-log magnitudes runs only on data the user stated is that."""
        if self.spectrogram != part["spectrogram"]:
            raise self._error(
                f"{g['where']}.part.spectrogram",
                f"{part['corruption']!r} reads modality {modality!r} as a {part['spectrogram']} magnitude spectrogram "
                f"log(|STFT| + 1e-7); state that it is one with --spectrogram {part['spectrogram']} "
                "(a dB or standardised spectrogram must be converted first)",
            )

    def _named_corruptions(self) -> list[str]:
        """The corruption names the protocol's tables list explicitly (not "all" / "kind:K")."""
        names = []
        for g in self.groups:
            if g["kind"] == "joint":
                names += [p["corruption"] for p in g["parts"]]
            elif g["kind"] == "corruption" and not isinstance(g["corruptions"], str):
                names += list(g["corruptions"])
        return names

    plugins: tuple[dict, ...] = field(default=(), repr=False)  # {"name", "source", "sha256"} it can select

    def expand(self, specs: dict[str, ModalitySpec]) -> list[Condition]:
        """The conditions on data with these modality specs: clean first, then the groups in order."""
        return self.expand_with_notes(specs)[0]

    def expand_with_notes(self, specs: dict[str, ModalitySpec]) -> tuple[list[Condition], list[str]]:
        """Conditions plus notes on what was skipped (a corruption that does not fit a modality's kind)."""
        conditions = [CLEAN]
        origin = {CLEAN.key: "clean"}
        notes: list[str] = []
        for g in self.groups:
            if g["kind"] == "corruption":
                made = self._expand_corruption(g, specs, notes)
            elif g["kind"] == "removal":
                made = self._expand_removal(g, specs)
            elif g["kind"] == "joint":
                made = self._expand_joint(g, specs, notes)
            elif g["kind"] == "condition":
                made = self._expand_condition(g, specs)
            else:
                made = [
                    Condition(family=Family.CONFLICT, name="conflict", modalities=mods, rate=r, group=g["group"])
                    for mods, _ in self._resolve_targets(g, specs)
                    for r in g["rates"]
                ]
            for c in made:
                if c.key in origin:
                    raise self._error(
                        g["where"], f"condition {c.key} is already made by {origin[c.key]}; expected each condition once"
                    )
                origin[c.key] = g["where"]
                conditions.append(c)
        return conditions, notes

    def _error(self, key: str, message: str) -> InputError:
        return InputError(f"protocol {self.source}: key {key!r}: {message}")

    def _resolve_targets(self, g: dict, specs: dict[str, ModalitySpec]) -> list[tuple[tuple[str, ...], bool]]:
        """(modalities, explicit) pairs; explicit when the user named the modalities."""
        out = []
        key = f"{g['where']}.targets"
        for t in g["targets"]:
            if isinstance(t, list):
                missing = [m for m in t if m not in specs]
                if missing:
                    raise self._error(key, f"modality {missing[0]!r} is not in the data; expected one of: {', '.join(specs)}")
                out.append((tuple(t), True))
            elif t == "each":
                out += [((m,), False) for m in specs]
            elif t.startswith("kind:"):
                out += [((m,), False) for m, s in specs.items() if s.kind == t[5:]]
            elif t in specs:
                out.append(((t,), True))
            else:
                raise self._error(key, f"modality {t!r} is not in the data; expected one of: {', '.join(specs)}")
        return out

    def _expand_corruption(self, g: dict, specs: dict[str, ModalitySpec], notes: list[str]) -> list[Condition]:
        names = g["corruptions"]
        cspecs = _chosen(names)
        out = []
        for cspec in cspecs:
            for mods, explicit in self._resolve_targets(g, specs):
                why = next((w for w in (cspec.supports(specs[m]) for m in mods) if w), None)
                if why:
                    if explicit and isinstance(names, list):
                        raise self._error(f"{g['where']}.targets", why)
                    notes.append(f"{g['where']}: skipped: {why}")
                    continue
                if "levels" in g:
                    pairs = [(lv, None) for lv in g["levels"]]
                else:
                    pairs = list(zip(g["param_levels"], g["params"]))
                for level, param in pairs:
                    for r in g["rates"]:
                        out.append(
                            Condition(
                                family=Family.CORRUPTION, name=cspec.name, modalities=mods, level=level,
                                param=param, rate=r, group=g["group"],
                            )
                        )
        return out

    def _expand_condition(self, g: dict, specs: dict[str, ModalitySpec]) -> list[Condition]:
        """A [[condition]] table's cells, each checked by its family now rather than at the first batch."""
        family = get_family(g["family"])
        out = [
            Condition(family=family.name, name=g["name"], modalities=mods, level=level, rate=r, group=g["group"])
            for mods, _ in self._resolve_targets(g, specs)
            for level in g["levels"]
            for r in g["rates"]
        ]
        if family.check is not None:
            for c in out:
                try:
                    family.check(c, specs)
                except InputError as e:
                    raise self._error(g["where"], str(e)) from None
        return out

    def _part_modalities(self, g: dict, part: dict, specs: dict[str, ModalitySpec], notes: list[str]) -> list[str]:
        """The modalities a part's targets select that its corruption applies to."""
        chosen = []
        for mods, explicit in self._resolve_targets({"targets": part["targets"], "where": g["where"]}, specs):
            for m in mods:
                why = get_corruption(part["corruption"]).supports(specs[m])
                if not why and part["pixel_max"] is not None and specs[m].kind != "image":
                    why = f"part {part['corruption']!r} is in raw pixel units (pixel_max); modality {m!r} is of kind {specs[m].kind!r}, not an image"
                if why and explicit:
                    raise self._error(f"{g['where']}.part.targets", why)
                if why:
                    notes.append(f"{g['where']}: skipped: {why}")
                elif m not in chosen:
                    chosen.append(m)
        return chosen

    def _to_raw(self, g: dict, part: dict, spec: ModalitySpec) -> tuple[tuple | None, str]:
        """(name, scale, offset) with raw = x * scale + offset (None: x already is raw), and in words how."""
        top = part["pixel_max"]
        if self.normalization is not None:
            mean, std = self.normalization
            channels = spec.shape[0]
            for what, values in (("mean", mean), ("std", std)):
                if len(values) not in (1, channels):
                    raise self._error(
                        f"{g['where']}.part", f"normalization {what} has {len(values)} values; modality {spec.name!r} has {channels} channels"
                    )
            scale = tuple(v * top for v in std)
            offset = tuple(v * top for v in mean)
            return (spec.name, scale, offset), f"= (x * std + mean) * {top:g}, from the given normalization mean {list(mean)}, std {list(std)}"
        if spec.value_range is None:
            raise self._error(
                f"{g['where']}.part.pixel_max",
                f"its params are raw pixel values on [0, {top:g}], but modality {spec.name!r} has no known value range "
                "(a float file, perhaps normalised); give --value-range LO,HI (the values of black and white) or "
                "--normalization MEAN,STD (x = (raw / 255 - mean) / std)",
            )
        lo, hi = spec.value_range
        if (lo, hi) == (0.0, top):
            return None, f"= x, the value range ({lo:g}, {hi:g})"
        scale = top / (hi - lo)
        return (spec.name, (scale,), (0.0 - lo * scale,)), f"= (x - {lo:g}) * {top:g} / {hi - lo:g}, from the value range ({lo:g}, {hi:g})"

    def _expand_joint(self, g: dict, specs: dict[str, ModalitySpec], notes: list[str]) -> list[Condition]:
        resolved = []
        for part in g["parts"]:
            mods = self._part_modalities(g, part, specs, notes)
            if not mods:
                notes.append(f"{g['where']}: part {part['corruption']!r} ({part['targets']}) selects no modality of this data; left out")
                continue
            if "spectrogram" in part:
                self._check_spectrogram(g, part, mods[0])
            resolved.append((part, mods))
        if not resolved:
            notes.append(f"{g['where']}: skipped: no part applies to this data")
            return []
        touched = [m for _, mods in resolved for m in mods]
        if len(set(touched)) != len(touched):
            twice = next(m for m in touched if touched.count(m) > 1)
            raise self._error(f"{g['where']}.part", f"modality {twice!r} is selected by two parts; one part per modality")
        out = []
        for i, level in enumerate(g["levels"]):
            parts = []
            for part, mods in resolved:
                options = dict(part["options"])
                if self.vocab is not None and "vocab" in _kernel_options(part["corruption"]):
                    options.setdefault("vocab", self.vocab)
                to_raw = ()
                if part["pixel_max"] is not None:
                    to_raw = tuple(r for r in (self._to_raw(g, part, specs[m])[0] for m in mods) if r is not None)
                parts.append(
                    Part(
                        corruption=part["corruption"], modalities=tuple(mods), param=part["params"][i],
                        options=tuple(sorted(options.items())), shared_noise=part["noise"] == "shared" and len(mods) > 1,
                        pixel_max=part["pixel_max"], to_raw=to_raw, rate=part["rates"][i] if "rates" in part else None,
                    )
                )
            for r in g["rates"]:
                out.append(
                    Condition(
                        family=Family.CORRUPTION, name="+".join(p.corruption for p in parts), modalities=tuple(touched),
                        level=level, rate=r, group=g["group"], parts=tuple(parts), masks=g["masks"],
                    )
                )
        return out

    def _expand_removal(self, g: dict, specs: dict[str, ModalitySpec]) -> list[Condition]:
        if isinstance(g["subsets"], str):
            try:
                subsets = removal_subsets(list(specs), g["subsets"])
            except InputError as e:
                raise self._error(f"{g['where']}.subsets", str(e)) from None
        else:
            subsets = []
            for s in g["subsets"]:
                missing = [m for m in s if m not in specs]
                if missing:
                    raise self._error(
                        f"{g['where']}.subsets", f"modality {missing[0]!r} is not in the data; expected one of: {', '.join(specs)}"
                    )
                if len(set(s)) == len(specs):
                    raise self._error(f"{g['where']}.subsets", f"{s} removes every modality; at least one must stay")
                subsets.append(tuple(s))
        return [
            Condition(family=Family.REMOVAL, name=f, modalities=tuple(s), rate=r, group=g["group"])
            for s in subsets
            for f in g["fills"]
            for r in g["rates"]
        ]
