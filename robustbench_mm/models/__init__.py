"""Models: encoders, fusion backbones, pre-fusion calibration, baselines, checkpoints, training."""

from .base import Reencodable
from .calibration import PreFusionCalibration
from .checkpoint import LoadedModel, load_model, save_checkpoint
from .checks import check_inputs, check_tensors
from .fusion import BACKBONES, DEFAULTS, BackboneSpec, FusionModel, backbone, backbone_spec, build_model, normalize_config
from .training import train_and_save, train_model

# the literature's methods register their backbones on import, after the fusion.py ones (that
# order is the listing's); they import fusion.py, so fusion.py cannot import them
from .udml import UDMLFusion
from .qmf import QMFFusion
from .cal import CALFusion
from .unimodal import UnimodalModel

__all__ = [
    "BACKBONES",
    "CALFusion",
    "DEFAULTS",
    "BackboneSpec",
    "FusionModel",
    "LoadedModel",
    "PreFusionCalibration",
    "QMFFusion",
    "Reencodable",
    "UDMLFusion",
    "UnimodalModel",
    "backbone",
    "backbone_spec",
    "build_model",
    "check_inputs",
    "check_tensors",
    "load_model",
    "normalize_config",
    "save_checkpoint",
    "train_and_save",
    "train_model",
]
