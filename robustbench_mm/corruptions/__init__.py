"""Corruptions: the registry, the built-in catalog, modality removal and plug-in discovery."""

from . import audio, image, noise, sequence, tokens, vector  # noqa: F401  (registers the built-in catalog)
from .apply import affected_mask, apply_condition, condition_random
from .condition import CLEAN, FAMILIES, Condition
from .conflict import DonorPool
from .plugins import load_plugins
from .registry import CorruptionSpec, corruption, get_corruption, list_corruptions
from .removal import FILLS, SUBSET_SHORTCUTS, fill, removal_subsets
from .rng import RNG_VERSION, SampleRandom

__all__ = [
    "CLEAN", "FAMILIES", "FILLS", "RNG_VERSION", "SUBSET_SHORTCUTS", "Condition", "CorruptionSpec", "DonorPool",
    "SampleRandom", "affected_mask", "apply_condition", "condition_random", "corruption", "fill",
    "get_corruption", "list_corruptions", "load_plugins", "removal_subsets",
]
