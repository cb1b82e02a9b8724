"""Corruptions: the registry, the built-in catalog, condition families, modality removal and plug-in discovery."""

from . import audio, image, imagenet_c, noise, sequence, tokens, vector  # noqa: F401  (registers the built-in catalog)
from .apply import affected_mask, apply_condition, condition_random, perturb_modalities
from .condition import CLEAN, Condition
from .conflict import DonorPool
from .families import CONDITION_FAMILIES, ConditionFamily, FamilyContext, condition_family, family_of, get_family
from .plugins import load_plugins
from .registry import CorruptionSpec, corruption, get_corruption, list_corruptions
from .removal import FILLS, SUBSET_SHORTCUTS, fill, removal_subsets
from .rng import RNG_VERSION, SampleRandom

__all__ = [
    "CLEAN", "CONDITION_FAMILIES", "FILLS", "RNG_VERSION", "SUBSET_SHORTCUTS", "Condition", "ConditionFamily",
    "CorruptionSpec", "DonorPool", "FamilyContext", "SampleRandom", "affected_mask", "apply_condition",
    "condition_family", "condition_random", "corruption", "family_of", "fill", "get_corruption", "get_family",
    "list_corruptions", "load_plugins", "perturb_modalities", "removal_subsets",
]
