"""The compiled draws (numba, corruptions/_rng_numba.py) give torch's bits, and load only when asked or worth it.

Both paths run in this one process (RBMM_RNG=torch and RBMM_RNG=compiled), so a CI run with the
test extra exercises both. numba is in the test extra: this file fails, not skips, without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import robustbench_mm.corruptions as corruptions_package
from robustbench_mm.corruptions import rng as rng_module
from robustbench_mm.corruptions.rng import SampleRandom
from robustbench_mm.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
IDS = torch.tensor([0, 1, 5, 77, 2**31 - 1, 2**31, 2**32 + 9, 2**40 + 3, 2**62 + 11])


def _draws(ids: torch.Tensor) -> list[torch.Tensor]:
    """One generator's successive draws of every kind, shape and dtype SampleRandom offers."""
    g = SampleRandom(ids, 7, "compiled")
    x32 = torch.linspace(0.0, 1.0, 3 * 5 * 7).reshape(1, 3, 5, 7).expand(len(ids), 3, 5, 7)
    scale = torch.linspace(0.5, 2.0, 7)

    def add_scaled(values, xc, sc):
        values.mul_(sc).add_(xc)

    draws = []
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        draws += [g.normal(3, 17, 19, dtype=dtype), g.uniform(1001, dtype=dtype), g.normal(dtype=dtype), g.uniform(0, 4, dtype=dtype)]
    draws += [g.uniform_streams((1, 6, 0, 5, 300 * 301)), g.uniform_streams((16, 9), dtype=torch.float64)]
    draws += [g.combine("normal", add_scaled, x32, scale), g.combine("uniform", add_scaled, x32.double(), scale.double())]
    draws += [g.combine("normal", lambda v, xc: v.add_(xc), x32.half()), g.integers(7, 33), g.bernoulli(0.3, 40)]
    draws += [g.child("c").normal(2, 2), g.sample_mask(0.5)]
    return draws


def _on(path: str, monkeypatch, ids: torch.Tensor = IDS) -> list[torch.Tensor]:
    monkeypatch.setenv("RBMM_RNG", path)
    return _draws(ids)


def _bits(x: torch.Tensor) -> torch.Tensor:
    """The bytes of a float tensor (torch.equal calls -0.0 and 0.0 equal), other tensors as they are."""
    return x.contiguous().view(torch.uint8) if x.is_floating_point() else x


def _assert_same_bits(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype and x.shape == y.shape, i
        assert torch.equal(_bits(x), _bits(y)), i


def test_compiled_draws_are_torchs_bit_for_bit(monkeypatch):
    _assert_same_bits(_on("compiled", monkeypatch), _on("torch", monkeypatch))
    assert rng_module._loops not in (None, False)


def test_compiled_draws_under_inference_mode(monkeypatch):
    """The engine draws inside torch.inference_mode(): the loops write through numpy views of inference tensors."""
    with torch.inference_mode():
        got = _on("compiled", monkeypatch)
    _assert_same_bits(got, _on("torch", monkeypatch))


@pytest.mark.parametrize("chunk", [7, 61, 1000, 2**12])
def test_compiled_draws_match_torchs_across_chunk_boundaries(monkeypatch, chunk):
    """Ragged chunks, a chunk per row or several rows per chunk: the loops see views of every shape."""
    monkeypatch.setattr(rng_module, "_CPU_CHUNK", chunk)
    _assert_same_bits(_on("compiled", monkeypatch), _on("torch", monkeypatch))


def test_compiled_draws_of_empty_batches_and_single_samples(monkeypatch):
    for ids in (IDS[:0], IDS[-1:]):
        _assert_same_bits(_on("compiled", monkeypatch, ids), _on("torch", monkeypatch, ids))


def test_a_large_draw_matches_over_the_whole_bit_range(monkeypatch):
    """2**21 values per sample reach every 23-bit pattern's neighbourhood, the tails of the normals included."""
    ids = torch.arange(3)
    monkeypatch.setenv("RBMM_RNG", "compiled")
    fast = SampleRandom(ids, 1, "big")
    got = [fast.normal(2**21), fast.uniform(2**21, dtype=torch.float64), fast.normal(2**20, dtype=torch.float64)]
    monkeypatch.setenv("RBMM_RNG", "torch")
    slow = SampleRandom(ids, 1, "big")
    want = [slow.normal(2**21), slow.uniform(2**21, dtype=torch.float64), slow.normal(2**20, dtype=torch.float64)]
    _assert_same_bits(got, want)
    assert got[0].abs().max() > 5.0  # the extreme bit patterns were there


def test_auto_loads_the_loops_only_after_enough_torch_draws(monkeypatch):
    monkeypatch.delenv("RBMM_RNG", raising=False)
    monkeypatch.setattr(rng_module, "_loops", None)
    monkeypatch.setattr(rng_module, "_torch_values", 0)
    monkeypatch.setattr(rng_module, "_LOAD_AFTER", 1000)
    g = SampleRandom(torch.arange(10), 0, "auto")
    g.uniform(60)
    assert rng_module._loops is None and rng_module._torch_values == 600
    g.uniform(60)
    assert rng_module._loops is None and rng_module._torch_values == 1200
    g.uniform(60)  # past the threshold: this draw is compiled
    assert rng_module._loops not in (None, False) and rng_module._torch_values == 1200


def test_rng_path_errors_name_the_variable(monkeypatch):
    monkeypatch.setenv("RBMM_RNG", "fast")
    with pytest.raises(InputError, match=r"RBMM_RNG='fast'; expected one of: auto, compiled, torch"):
        SampleRandom(torch.arange(2), 0, "k").uniform(3)


def test_without_numba_auto_stays_on_torch_and_compiled_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    monkeypatch.delitem(sys.modules, "robustbench_mm.corruptions._rng_numba", raising=False)
    monkeypatch.delattr(corruptions_package, "_rng_numba", raising=False)
    monkeypatch.setattr(rng_module, "_loops", None)
    monkeypatch.setattr(rng_module, "_LOAD_AFTER", 0)
    monkeypatch.setenv("RBMM_RNG", "auto")
    expected = _draws(IDS)
    assert rng_module._loops is False
    monkeypatch.setenv("RBMM_RNG", "torch")
    _assert_same_bits(expected, _draws(IDS))
    monkeypatch.setenv("RBMM_RNG", "compiled")
    with pytest.raises(InputError, match=r"RBMM_RNG=compiled needs numba: pip install 'robustbench-mm\[fast\]'"):
        SampleRandom(IDS, 0, "k").uniform(3)
    with pytest.raises(InputError, match=r"RBMM_RNG=compiled needs numba"):  # a kernel without draws asks too (JPEG)
        rng_module.runs_compiled(torch.device("cpu"))


def test_a_short_run_never_imports_numba():
    """By default a process loads numba only after _LOAD_AFTER values on torch's path, and the
    kernels with compiled steps of their own (fog's fractal, reverb's product, JPEG's conversions,
    `rng.runs_compiled`) never load it by themselves."""
    code = ("import sys, torch; from robustbench_mm.corruptions import SampleRandom, get_corruption; "
            "from robustbench_mm.datasets import ModalitySpec; "
            "g = SampleRandom(torch.arange(64), 0, 'k'); [g.normal(3, 64, 64) for _ in range(4)]; "
            "image, audio = ModalitySpec('i', 'image', (3, 32, 32)), ModalitySpec('a', 'audio', (4000,)); "
            "[get_corruption(name)(torch.rand(2, 3, 32, 32), 3, SampleRandom(torch.arange(2), 0, name), image) "
            " for name in ('imagenet-c/fog', 'imagenet-c/jpeg_compression')]; "
            "get_corruption('reverb')(torch.rand(2, 4000) - 0.5, 1.0, SampleRandom(torch.arange(2), 0, 'r'), audio); "
            "print('numba' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "RBMM_RNG"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "False"


def test_an_installed_numba_that_fails_to_load_is_reported_as_such(monkeypatch):
    """Not with "pip install": the import failed for another reason, which the message carries."""
    monkeypatch.setitem(sys.modules, "robustbench_mm.corruptions._rng_numba", None)  # its import raises ModuleNotFoundError
    monkeypatch.delattr(corruptions_package, "_rng_numba", raising=False)
    monkeypatch.setattr(rng_module, "_loops", None)
    monkeypatch.setenv("RBMM_RNG", "compiled")
    with pytest.raises(InputError, match=r"numba is installed but the compiled loops did not load \(ModuleNotFoundError: import of ") as caught:
        SampleRandom(IDS, 0, "k").uniform(3)
    assert "pip install" not in str(caught.value)


@pytest.mark.parametrize("first, sizes", [(0, (2**14 + 1,)), (3, (5, 2**15, 1, 7)), (2**33 + 5, (150_528,)), (0, (0, 2**16))])
def test_compiled_salts_are_torchs_bit_for_bit(first, sizes):
    """The large draws' salts (`_rng_numba.stream_salts`) against `rng._stream_salts`, including a
    stream number past 2**32 (its bits and its golden multiple wrap) and an empty stream."""
    import numpy as np

    from robustbench_mm.corruptions import _rng_numba

    want = rng_module._stream_salts(torch.device("cpu"), first, sizes)
    got = np.empty(sum(sizes), dtype=np.uint32)
    _rng_numba.stream_salts(first, np.asarray(sizes, dtype=np.int64), got)
    assert torch.equal(torch.from_numpy(got.view(np.int32)), want)
