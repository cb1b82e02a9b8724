"""The dataset registry (`DATASETS`, a `Registry`): a named dataset is one decorated loader.

    @dataset("name", description="...", options=("seed", ...))
    def name(options, *, modalities, seed) -> {"train": MultimodalData, "val": ..., "test": ...}

options : the `key=value` options of the source string ("name:seed=1,..."), as strings; only the
    declared keys reach the loader (others are refused, naming the declared ones).
modalities : the modalities asked for (None: the dataset's default set); the loader returns its
    splits restricted to them, in that order.
seed : the split seed (and a generator's seed) unless the options set one.

Every split carries the train statistics (`splits.build_splits` computes them). A registered
dataset is named by `--data NAME`, listed by `rbmm list datasets`, and its task is its own (a
feature file's is inferred or given by `--task`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import InputError, one_of
from ..registry import Registry, source_of
from .batch import MultimodalData

DatasetLoader = Callable[..., dict[str, MultimodalData]]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its loader, one line on it, and the option keys it takes."""

    name: str
    load: DatasetLoader
    description: str
    options: tuple[str, ...]

    def splits(self, options: dict[str, str], *, modalities: Sequence[str] | None, seed: int) -> dict[str, MultimodalData]:
        """The loader's splits, after refusing options it does not declare."""
        unknown = [k for k in options if k not in self.options]
        if unknown:
            if not self.options:
                raise InputError(f"dataset {self.name!r} takes no options; got {unknown[0]!r}")
            raise one_of(f"option of dataset {self.name!r}", unknown[0], self.options)
        return self.load(options, modalities=list(modalities) if modalities else None, seed=seed)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def dataset(name: str, *, description: str, options: Sequence[str] = ()) -> Callable[[DatasetLoader], DatasetLoader]:
    """Register `fn(options, *, modalities, seed)` as dataset `name` (see the module docstring)."""
    if not name or ":" in name or "/" in name:
        raise InputError(f"dataset name {name!r}: expected a non-empty name without ':' or '/' (it is a --data source)")

    def register(fn: DatasetLoader) -> DatasetLoader:
        if getattr(DATASETS.registered(name), "load", None) is fn:
            return fn
        DATASETS.add(name, DatasetSpec(name, fn, description, tuple(options)), source_of(fn))
        return fn

    return register
