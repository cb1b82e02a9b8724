"""Models: encoders, fusion backbones, pre-fusion calibration, baselines, checkpoints, training."""

from .base import Reencodable
from .calibration import PreFusionCalibration
from .checkpoint import LoadedModel, load_model, save_checkpoint
from .checks import check_inputs, check_tensors
from .fusion import DEFAULTS, FUSIONS, FusionModel, build_model, normalize_config
from .training import train_and_save, train_model

__all__ = [
    "DEFAULTS",
    "FUSIONS",
    "FusionModel",
    "LoadedModel",
    "PreFusionCalibration",
    "Reencodable",
    "build_model",
    "check_inputs",
    "check_tensors",
    "load_model",
    "normalize_config",
    "save_checkpoint",
    "train_and_save",
    "train_model",
]
