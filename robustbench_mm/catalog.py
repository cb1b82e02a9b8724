"""The built-in names each `rbmm` help text offers, declared without importing what they name.

`rbmm COMMAND --help` lists the valid choices (backbones, datasets, metrics, ...). Reading them
from the registries would import torch, pandas and every kernel (seconds) just to print help, so
the built-in names are declared here, in the standard library only, and `names()` adds any entry
a plug-in has registered in this process. tests/test_catalog.py checks each declaration against
its registry, so a new built-in that is not declared here fails a test rather than going missing
from the help.
"""

from __future__ import annotations

from .registry import all_registries

# `rbmm list KIND` -> the module whose import registers every built-in entry of that kind, in listing
# order: a listing imports that one module (torch, but not pandas, scipy or matplotlib, report sections
# aside) rather than every registry's (tests/test_startup.py checks each against the full import)
LIST_MODULES = {"corruptions": "corruptions", "metrics": "metrics", "backbones": "models", "datasets": "datasets",
                "condition_families": "corruptions", "report_sections": "report"}

# help field -> (registry kind, the built-in names in registration order)
DECLARED: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "fusions": ("backbone", ("concat", "transformer", "conv", "late", "uncertainty-late", "udml", "qmf", "cal", "unimodal")),
    "datasets": ("dataset", ("mfeat", "mfeat-all", "avdigits", "avdigits-all", "synthetic", "PATH.npz / PATH.pt",
                             "module:factory", "hdf5", "csd", "affect-pickle", "parquet", "hf-arrow", "npy-folder", "media")),
    "metrics": ("metric", ("accuracy", "macro_f1", "nll", "ece", "brier", "confidence", "mae", "pearson", "sign_accuracy")),
    "kinds": (None, ("vector", "image", "sequence", "audio", "tokens")),
    "data_formats": (None, ("npz", "pt", "hdf5", "csd", "affect-pickle", "parquet", "hf-arrow", "npy-folder", "media")),
    "export_formats": (None, ("robustbench", "lm-eval")),
    "list_kinds": (None, (*LIST_MODULES, "protocols")),
}
TRAIN_DEFAULTS = {"epochs": 60, "batch_size": 64, "lr": 2e-3, "patience": 10, "weight_decay": 1e-4}


def names(field: str) -> list[str]:
    """The declared names of `field`, then any its registry holds beyond them (plug-ins loaded so far)."""
    kind, declared = DECLARED[field]
    registry = all_registries().get(kind) if kind else None
    extra = [name for name in (registry.names() if registry is not None else ()) if name not in declared]
    return [*declared, *extra]
