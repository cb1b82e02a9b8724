"""Cross-modal conflict: a modality taken from another sample of a different class.

The donor of sample i is drawn uniformly among the pool's samples whose label differs from i's,
from common random numbers keyed on (seed, condition, id i): it does not depend on the batch. For
regression any other sample of the pool is a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..datasets.batch import MultimodalData
from ..domain import Task
from ..errors import InputError, one_of
from .rng import SampleRandom


@dataclass
class DonorPool:
    """All samples of a split, on the evaluation device, indexed by class for donor draws.

    order : pool positions sorted by label; start[k], count[k] : where class k sits in `order`.
    """

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    ids: torch.Tensor
    order: torch.Tensor
    start: torch.Tensor
    count: torch.Tensor
    by_class: bool

    @classmethod
    def from_data(cls, data: MultimodalData, device: torch.device | str = "cpu") -> "DonorPool":
        n = len(data)
        if n < 2:
            raise InputError(f"dataset {data.name!r}: cross-modal conflict needs at least 2 samples, got {n}")
        by_class = data.task == Task.CLASSIFICATION
        labels = data.labels.to(device)
        if by_class:
            counts = torch.bincount(data.labels.long())
            if int((counts > 0).sum()) < 2:
                raise InputError(f"dataset {data.name!r}: cross-modal conflict needs at least 2 classes")
            order = torch.argsort(data.labels.long(), stable=True)
            start = torch.cumsum(counts, 0) - counts
        else:
            order = torch.arange(n)
            counts = start = torch.zeros(1, dtype=torch.int64)
        return cls(
            inputs={k: v.to(device) for k, v in data.inputs.items()},
            labels=labels,
            ids=data.ids.to(device),
            order=order.to(device),
            start=start.to(device),
            count=counts.to(device),
            by_class=by_class,
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def donors(self, ids: torch.Tensor, labels: torch.Tensor, rng: SampleRandom) -> torch.Tensor:
        """Pool positions (B,) of each sample's donor: another class (or, for regression, another id)."""
        n = len(self)
        u = rng.uniform(dtype=torch.float64)
        if not self.by_class:
            r = torch.floor(u * (n - 1)).long().clamp(max=n - 2)
            return torch.where(self.ids[r] == ids, torch.full_like(r, n - 1), r)
        y = labels.long()
        known = (y >= 0) & (y < self.count.shape[0])
        yk = torch.where(known, y, torch.zeros_like(y))
        count_y = torch.where(known, self.count[yk], torch.zeros_like(y))
        start_y = torch.where(known, self.start[yk], torch.zeros_like(y))
        candidates = n - count_y
        r = torch.minimum(torch.floor(u * candidates).long(), candidates - 1)
        pos = torch.where(r < start_y, r, r + count_y)
        return self.order[pos]

    def take(self, modality: str, index: torch.Tensor) -> torch.Tensor:
        """The donors' values of one modality."""
        if modality not in self.inputs:
            raise one_of("modality in the donor pool", modality, self.inputs)
        return self.inputs[modality][index]
