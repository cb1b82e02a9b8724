"""The embedded datasets, one decorated loader each (see `registry.py` for the loader contract)."""

from __future__ import annotations

from dataclasses import fields

from ..errors import InputError
from .avdigits import OPTIONS as AVDIGITS_OPTIONS
from .avdigits import avdigits_splits
from .mfeat import mfeat_splits
from .registry import dataset
from .synthetic import SyntheticConfig, synthetic_splits


def _seed(options: dict[str, str], seed: int, where: str) -> int:
    if "seed" not in options:
        return seed
    try:
        return int(options["seed"])
    except ValueError:
        raise InputError(f"dataset {where!r}: option seed={options['seed']!r} is not an integer") from None


@dataset(
    "mfeat",
    description="UCI Multiple Features digits (embedded): 2,000 samples, 10 classes; pix (image 1x16x15) + fou + fac; "
    "'mfeat:seed=N' sets the 60/20/20 split seed",
    options=("seed",),
)
def mfeat(options, *, modalities, seed):
    return mfeat_splits(modalities, seed=_seed(options, seed, "mfeat"))


@dataset("mfeat-all", description="the same digits with all six views: fou, fac, kar, pix (image), zer, mor", options=("seed",))
def mfeat_all(options, *, modalities, seed):
    return mfeat_splits(modalities, seed=_seed(options, seed, "mfeat-all"), all_views=True)


@dataset(
    "avdigits",
    description="the mfeat digit images paired by class with real spoken digits (FSDD, CC BY-SA 4.0, embedded): "
    "image (1x16x15) + audio (8 kHz waveform, 8000 samples); options 'avdigits:" + ",".join(AVDIGITS_OPTIONS)
    + "=...', split=speaker holds one speaker out for test (holdout=NAME)",
    options=AVDIGITS_OPTIONS,
)
def avdigits(options, *, modalities, seed):
    return avdigits_splits(options, modalities, seed=seed)


@dataset("avdigits-all", description="avdigits plus the mfeat vector views fou, fac, kar, zer, mor", options=AVDIGITS_OPTIONS)
def avdigits_all(options, *, modalities, seed):
    return avdigits_splits(options, modalities, seed=seed, all_views=True)


@dataset(
    "synthetic",
    description="seeded sequence + audio + tokens set; options 'synthetic:" + ",".join(
        f"{k}={v}" for k, v in SyntheticConfig().__dict__.items()
    ) + "' (info=x sets all info_*)",
    options=tuple(f.name for f in fields(SyntheticConfig)) + ("info",),
)
def synthetic(options, *, modalities, seed):
    splits = synthetic_splits(options, seed=seed)
    return {s: d.select(modalities) for s, d in splits.items()} if modalities else splits
