"""Models: encoders, fusion backbones, pre-fusion calibration, baselines, checkpoints, training."""

from .base import Reencodable

__all__ = ["Reencodable"]
