"""Datasets: everything becomes a `MultimodalData` of `Batch`es with modality specs."""

from .batch import KINDS, PAD_ID, UNK_ID, Batch, ModalitySpec, MultimodalData, SplitData
from .contract import InputContract, input_contract, kind_warnings, parse_value_ranges, with_value_ranges
from .files import parse_kind_overrides
from .loader import describe_sources, load_dataset, load_splits
from .mfeat import mfeat_splits
from .registry import DATASETS, DatasetSpec, dataset
from .splits import build_splits, stratified_split
from .synthetic import SyntheticConfig, generate_synthetic, synthetic_splits

__all__ = [
    "DATASETS",
    "KINDS",
    "PAD_ID",
    "UNK_ID",
    "Batch",
    "DatasetSpec",
    "InputContract",
    "ModalitySpec",
    "MultimodalData",
    "SplitData",
    "SyntheticConfig",
    "build_splits",
    "dataset",
    "describe_sources",
    "generate_synthetic",
    "input_contract",
    "kind_warnings",
    "load_dataset",
    "load_splits",
    "mfeat_splits",
    "parse_kind_overrides",
    "parse_value_ranges",
    "stratified_split",
    "synthetic_splits",
    "with_value_ranges",
]
