"""Datasets: everything becomes a `MultimodalData` of `Batch`es with modality specs."""

from .batch import KINDS, PAD_ID, UNK_ID, Batch, ModalitySpec, MultimodalData, SplitData
from .files import build_splits, parse_kind_overrides, stratified_split
from .loader import describe_sources, load_dataset, load_splits
from .mfeat import mfeat_splits
from .synthetic import SyntheticConfig, generate_synthetic, synthetic_splits

__all__ = [
    "KINDS",
    "PAD_ID",
    "UNK_ID",
    "Batch",
    "ModalitySpec",
    "MultimodalData",
    "SplitData",
    "SyntheticConfig",
    "build_splits",
    "describe_sources",
    "generate_synthetic",
    "load_dataset",
    "load_splits",
    "mfeat_splits",
    "parse_kind_overrides",
    "stratified_split",
    "synthetic_splits",
]
