"""Corruptions: the registry, the built-in catalog, modality removal and plug-in discovery."""

from .condition import CLEAN, FAMILIES, Condition
from .registry import CorruptionSpec, corruption, get_corruption, list_corruptions
from .rng import SampleRandom

__all__ = [
    "CLEAN", "FAMILIES", "Condition", "CorruptionSpec", "corruption", "get_corruption",
    "list_corruptions", "SampleRandom",
]
