"""Datasets: everything becomes a `MultimodalData` of `Batch`es with modality specs."""

from .batch import KINDS, PAD_ID, UNK_ID, Batch, ModalitySpec, MultimodalData

__all__ = ["KINDS", "PAD_ID", "UNK_ID", "Batch", "ModalitySpec", "MultimodalData"]
