"""The one shape data takes on its way through the suite: modality specs, `Batch`, `MultimodalData`.

Every dataset (embedded, feature file, user factory) ends up as a `MultimodalData`: whole-split
tensors in memory plus the modality specs. The engine walks it in `Batch`es on the model's device.
Sample ids are stable (they do not depend on batch size or sharding), which is what lets common
random numbers give every sample the same perturbation in every run.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import ClassVar, Iterator

import numpy as np
import torch

from ..errors import InputError

KINDS = ("vector", "image", "sequence", "audio", "tokens")

# Reserved token ids for the `tokens` kind: 0 pads, 1 is the unknown/blank word.
PAD_ID = 0
UNK_ID = 1



# Letters, digits, `_`, `-` and single dots: `+` joins the modalities of a cell ("a+b"), `|`
# separates the fields of a condition key, `/` would make a path, so a name holding one of them
# would be read back as something else (the Shapley table took "a+b" for the pair {a, b}).
MODALITY_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]|\.(?!\.))*$")


def check_modality_name(name: object) -> None:
    """One line unless `name` is a safe modality name (`MODALITY_NAME`), checked where data enters."""
    if not isinstance(name, str) or not MODALITY_NAME.match(name):
        raise InputError(
            f"modality name {name!r}: expected letters, digits, '_', '-' and single '.' (no '+', '|', '/', '..' or spaces: "
            "'+' and '|' join names in cell keys); rename the array or column"
        )


@dataclass
class ModalitySpec:
    """What one modality looks like, per sample.

    shape : per-sample shape. vector (D,), image (C, H, W), sequence (T, D), audio (N,), tokens (L,).
    mean, std : train-split statistics (float tensors broadcastable to `shape`; per feature for
        vector, per pixel for image, per channel D for sequence, scalar for audio; None for tokens).
        Used by mean/noise fills and by corruptions that scale noise to the data's own spread.
    value_range : valid (low, high) of the values, kept by every corruption (None = unbounded).
    vocab_size : number of token ids for `tokens` (ids 0 = pad and 1 = unknown are reserved).
    scaling : the rule that put the stored values in `value_range` (the input contract shows it;
        not saved with a model: it describes the data, not what the model was built for).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    value_range: tuple[float, float] | None = None
    vocab_size: int | None = None
    scaling: str = ""

    def __post_init__(self) -> None:
        check_modality_name(self.name)
        if self.kind not in KINDS:
            raise InputError(f"modality {self.name!r}: unknown kind {self.kind!r}; expected one of: {', '.join(KINDS)}")
        self.shape = tuple(int(s) for s in self.shape)
        if self.kind == "tokens" and not self.vocab_size:
            raise InputError(f"modality {self.name!r}: kind 'tokens' needs vocab_size")

    def to_dict(self) -> dict:
        """Plain types and tensors only, so checkpoints load with weights_only=True."""
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "mean": None if self.mean is None else self.mean.detach().cpu().clone(),
            "std": None if self.std is None else self.std.detach().cpu().clone(),
            "value_range": None if self.value_range is None else [float(v) for v in self.value_range],
            "vocab_size": self.vocab_size,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModalitySpec":
        vr = d.get("value_range")
        return cls(
            name=d["name"],
            kind=d["kind"],
            shape=tuple(d["shape"]),
            mean=d.get("mean"),
            std=d.get("std"),
            value_range=None if vr is None else (float(vr[0]), float(vr[1])),
            vocab_size=d.get("vocab_size"),
        )

    def compatible_with(self, other: "ModalitySpec") -> str | None:
        """None when a model built for `self` can take data shaped like `other`, else why not."""
        if self.kind != other.kind:
            return f"kind {other.kind!r} but the model expects {self.kind!r}"
        if self.shape != other.shape:
            return f"shape {other.shape} but the model expects {self.shape}"
        if self.kind == "tokens" and (other.vocab_size or 0) > (self.vocab_size or 0):
            return f"vocab_size {other.vocab_size} but the model's embedding has {self.vocab_size}"
        return None


@dataclass
class Batch:
    """One batch: modality -> tensor (B, *shape), labels (B,), stable sample ids (B,), presence.

    present[name] is a bool tensor (B,) that is False where the modality was removed; models
    that accept a presence mask use it, others only see the filled values.
    """

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    ids: torch.Tensor
    present: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.present:
            self.present = {
                name: torch.ones(len(self.ids), dtype=torch.bool, device=self.ids.device) for name in self.inputs
            }

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def device(self) -> torch.device:
        return self.ids.device

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            inputs={k: v.to(device, non_blocking=True) for k, v in self.inputs.items()},
            labels=self.labels.to(device, non_blocking=True),
            ids=self.ids.to(device, non_blocking=True),
            present={k: v.to(device, non_blocking=True) for k, v in self.present.items()},
        )

    def with_modality(self, name: str, value: torch.Tensor, present: torch.Tensor | None = None) -> "Batch":
        """A new Batch with one modality replaced; the original is never mutated."""
        inputs = dict(self.inputs)
        inputs[name] = value
        presence = dict(self.present)
        if present is not None:
            presence[name] = present
        return replace(self, inputs=inputs, present=presence)


@dataclass(kw_only=True)
class SplitData(ABC):
    """What every split has wherever its samples live: metadata, labels, ids, and the walks over them.

    Subclasses say only where the samples are: `MultimodalData` holds tensors in memory,
    `readers.media.StreamedData` decodes each batch from files. Selecting, subsetting, sharding and
    batching are written once here, so the two cannot drift apart.

    task : "classification" (labels int64 class ids, `num_classes` set) or "regression" (float).
    ids : int64 (N,) stable sample ids, unique within the dataset.
    source : how it was loaded (e.g. "mfeat", "synthetic:seed=0", a file path) for manifests.
    lengths : modality -> int64 (N,) valid time steps per sample, for sequences a reader padded with
        zeros to one length (the mask is `arange(T) < length`); empty when nothing was padded.
    """

    streamed: ClassVar[bool]  # False: whole tensors in memory; True: batches decoded from files

    name: str
    split: str
    specs: dict[str, ModalitySpec]
    labels: torch.Tensor
    ids: torch.Tensor
    task: str = "classification"
    num_classes: int | None = None
    source: str = ""
    class_names: list[str] | None = None
    lengths: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def modalities(self) -> list[str]:
        return list(self.specs)

    @abstractmethod
    def _samples(self, rows) -> dict:
        """The per-sample storage fields at `rows` (an index tensor or a slice), for `replace`."""

    @abstractmethod
    def _samples_of(self, modalities: list[str]) -> dict:
        """The per-sample storage fields of only these modalities, for `replace`."""

    @abstractmethod
    def _batch_inputs(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        """The inputs of samples lo..hi-1 as tensors."""

    @abstractmethod
    def _hash_samples(self, h) -> None:
        """Feed every sample's content into the fingerprint `h`."""

    def select(self, modalities: list[str]):
        """The same samples with only the named modalities, in that order."""
        unknown = [m for m in modalities if m not in self.specs]
        if unknown:
            raise InputError(
                f"dataset {self.name!r} has no modality {unknown[0]!r}; available: {', '.join(self.specs)}"
            )
        return replace(
            self,
            specs={m: self.specs[m] for m in modalities},
            lengths={m: v for m, v in self.lengths.items() if m in modalities},
            **self._samples_of(modalities),
        )

    @abstractmethod
    def _rescaled_samples(self, ranges: dict[str, tuple[tuple[float, float], tuple[float, float]]]) -> dict:
        """The per-sample storage fields with modality m's values mapped by `map_range`, for `replace`."""

    def rescaled(self, specs: dict[str, ModalitySpec], ranges: dict[str, tuple[tuple[float, float], tuple[float, float]]]):
        """The same samples with `specs`, each modality in `ranges` mapped from its (old, new) range
        by `map_range` (see `contract.with_value_ranges`)."""
        return replace(self, specs=specs, **self._rescaled_samples(ranges))

    def _take(self, rows):
        return replace(
            self,
            labels=self.labels[rows],
            ids=self.ids[rows],
            lengths={k: v[rows] for k, v in self.lengths.items()},
            **self._samples(rows),
        )

    def subset(self, index: torch.Tensor):
        """The samples at `index` (ids kept, so common random numbers still match)."""
        return self._take(index)

    def rows(self, start: int, stop: int):
        """Samples start..stop-1 (in memory: views, no copy): one rank's shard."""
        return self._take(slice(start, stop))

    def batches(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[Batch]:
        """Every sample of this rank's shard exactly once, in id order, remainder batch included.

        Shards are contiguous blocks, so concatenating the shards of ranks 0..world_size-1 gives
        the samples in the same order as one process.
        """
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        n = len(self)
        start = (n * rank) // world_size
        stop = (n * (rank + 1)) // world_size
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            yield Batch(inputs=self._batch_inputs(lo, hi), labels=self.labels[lo:hi], ids=self.ids[lo:hi]).to(device)

    def fingerprint(self) -> str:
        """SHA-256 over ids, labels and every sample's content (for manifests and resume checks)."""
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.split}|{self.task}".encode())
        for t in (self.ids, self.labels):
            _hash_tensor(h, t)
        self._hash_samples(h)
        return h.hexdigest()


def map_range(x, old: tuple[float, float], new: tuple[float, float]):
    """Values of range `old` linearly onto `new`: (x - lo) / (hi - lo) * (new hi - new lo) + new lo,
    in x's own float type (a tensor or an array). 0..255 onto 0..1 is exactly x / 255, as
    torchvision's ToTensor and MultiBench's loaders divide."""
    span, new_span = old[1] - old[0], new[1] - new[0]
    y = (x - old[0]) / span
    return y if new == (0.0, 1.0) else y * new_span + new[0]


def _hash_tensor(h, t: torch.Tensor) -> None:
    a = t.detach().cpu().contiguous().numpy()
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())


@dataclass(kw_only=True)
class MultimodalData(SplitData):
    """One split of a dataset, in memory: a tensor per modality holding every sample."""

    streamed: ClassVar[bool] = False

    inputs: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        n = int(self.labels.shape[0])
        if set(self.inputs) != set(self.specs):
            raise InputError(f"dataset {self.name!r}: inputs {sorted(self.inputs)} do not match specs {sorted(self.specs)}")
        for name, x in self.inputs.items():
            if x.shape[0] != n:
                raise InputError(f"dataset {self.name!r}: modality {name!r} has {x.shape[0]} samples, labels have {n}")
            if tuple(x.shape[1:]) != self.specs[name].shape:
                raise InputError(
                    f"dataset {self.name!r}: modality {name!r} has per-sample shape {tuple(x.shape[1:])}, "
                    f"spec says {self.specs[name].shape}"
                )
        if self.ids.shape != (n,):
            raise InputError(f"dataset {self.name!r}: ids must have shape ({n},), got {tuple(self.ids.shape)}")
        for name, length in self.lengths.items():
            if name not in self.specs or length.shape != (n,):
                raise InputError(f"dataset {self.name!r}: lengths of {name!r} must be one per sample of a modality")

    def _samples(self, rows) -> dict:
        return {"inputs": {k: v[rows] for k, v in self.inputs.items()}}

    def _samples_of(self, modalities: list[str]) -> dict:
        return {"inputs": {m: self.inputs[m] for m in modalities}}

    def _batch_inputs(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        return {k: v[lo:hi] for k, v in self.inputs.items()}

    def _rescaled_samples(self, ranges: dict[str, tuple[tuple[float, float], tuple[float, float]]]) -> dict:
        return {"inputs": {k: map_range(v, *ranges[k]) if k in ranges else v for k, v in self.inputs.items()}}

    def _hash_samples(self, h) -> None:
        for t in [self.inputs[k] for k in sorted(self.inputs)] + [self.lengths[k] for k in sorted(self.lengths)]:
            _hash_tensor(h, t)
