"""robustbench-mm: robustness benchmarking for multimodal fusion models."""

__version__ = "0.1.0"
