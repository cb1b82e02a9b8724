"""robustbench-mm: robustness benchmarking for multimodal fusion models.

The public API is small and flat; everything else is an implementation detail:

    from robustbench_mm import load_dataset, load_model, evaluate, corruption, corrupt
    data = load_dataset("mfeat", "test")
    run = evaluate([load_model("model.pt")], data, "standard", out="results/mine")
    foggy = corrupt(uint8_images_bhwc, "fog", 3)   # ImageNet-C's fog, as imagecorruptions.corrupt
"""

from .version import __version__

__all__ = ["corrupt", "corruption", "evaluate", "load_dataset", "load_model", "load_run", "write_report"]


def __getattr__(name: str):
    """Import on first use, so `import robustbench_mm` and `rbmm --help` stay fast."""
    if name == "evaluate":
        from .engine import evaluate

        return evaluate
    if name == "load_model":
        from .models import load_model

        return load_model
    if name == "load_dataset":
        from .datasets import load_dataset

        return load_dataset
    if name == "corrupt":
        from .corruptions.arrays import corrupt

        return corrupt
    if name == "corruption":
        from .corruptions import corruption

        return corruption
    if name == "load_run":
        from .results import load_run

        return load_run
    if name == "write_report":
        from .report import write_report

        return write_report
    raise AttributeError(f"module 'robustbench_mm' has no attribute {name!r}")
