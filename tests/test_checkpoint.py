"""Checkpoints: our format round-trips exactly; every other file kind loads or fails in one line."""

from __future__ import annotations

import os
import pickle
import sys
import textwrap

import pytest
import torch

from robustbench_mm.datasets.batch import ModalitySpec
from robustbench_mm.errors import InputError
from robustbench_mm.models import Reencodable, build_model
from robustbench_mm.models.checkpoint import FORMAT, load_model, save_checkpoint

SPECS = [
    ModalitySpec("v", "vector", (6,), mean=torch.linspace(-1, 1, 6), std=torch.full((6,), 2.0)),
    ModalitySpec("img", "image", (1, 8, 7), mean=torch.zeros(1, 8, 7), std=torch.ones(1, 8, 7)),
]


def _config(fusion: str = "concat", calibration: bool = True) -> dict:
    return {
        "fusion": fusion,
        "calibration": calibration,
        "specs": [s.to_dict() for s in SPECS],
        "num_classes": 3,
        "dim": 16,
        "width": 16,
        "hidden": 16,
    }


def _inputs(n: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {"v": torch.randn(n, 6, generator=g), "img": torch.randn(n, 1, 8, 7, generator=g)}


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_model(_config())
    with torch.no_grad():  # make the calibration gates non-trivial so the round trip covers them
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


@pytest.fixture
def saved(tmp_path, model):
    return save_checkpoint(model, tmp_path / "m.pt", {"dataset": "toy", "seed": 7}, {"val": {"accuracy": 0.5}})


def test_round_trip_gives_identical_predictions(saved, model):
    loaded = load_model(saved)
    assert loaded.kind == FORMAT and loaded.reencodable and isinstance(loaded.module, Reencodable)
    assert not loaded.module.training
    x = _inputs()
    assert torch.equal(loaded.module(x), model(x))
    assert loaded.config["dataset"] == "toy" and loaded.config["seed"] == 7 and loaded.config["calibration"] is True
    assert loaded.metrics == {"val": {"accuracy": 0.5}}


def test_sha256_is_of_the_file(saved):
    import hashlib

    assert load_model(saved).sha256 == hashlib.sha256(saved.read_bytes()).hexdigest()


def test_checkpoint_is_a_plain_weights_only_dict(saved):
    obj = torch.load(saved, weights_only=True)
    assert obj["format"] == FORMAT and set(obj) == {"format", "config", "state_dict", "metrics"}
    assert obj["config"]["fusion"] == "concat" and "version" in obj["config"]


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_model(tmp_path / "absent.pt")


@pytest.mark.parametrize("cut", [0, 100, 0.5])
def test_truncated_file(tmp_path, saved, cut):
    data = saved.read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: int(cut * len(data)) if isinstance(cut, float) else cut])
    with pytest.raises(InputError, match="corrupt or truncated") as e:
        load_model(bad)
    assert "\n" not in str(e.value)


def test_random_bytes_are_corrupt(tmp_path):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_model(bad)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_pickle_needing_code_is_refused_without_trust(tmp_path, model):
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(InputError, match="execute arbitrary code"):
        load_model(evil)
    full = tmp_path / "full.pt"
    torch.save(model, full)
    with pytest.raises(InputError, match="--trust-checkpoint"):
        load_model(full)


def test_full_pickle_loads_with_trust(tmp_path, model):
    full = tmp_path / "full.pt"
    torch.save(model, full)
    loaded = load_model(full, trust=True)
    assert loaded.kind == "pickle" and loaded.reencodable
    x = _inputs()
    assert torch.equal(loaded.module(x), model(x))


def test_unknown_fusion_lists_choices(tmp_path, saved):
    obj = torch.load(saved, weights_only=True)
    obj["config"]["fusion"] = "attention-soup"
    bad = tmp_path / "bad.pt"
    torch.save(obj, bad)
    with pytest.raises(InputError, match="attention-soup.*concat.*transformer"):
        load_model(bad)


def test_config_state_mismatch(tmp_path, saved):
    obj = torch.load(saved, weights_only=True)
    obj["config"]["calibration"] = False  # the state dict has calibration weights
    bad = tmp_path / "mismatch.pt"
    torch.save(obj, bad)
    with pytest.raises(InputError, match="does not match its config"):
        load_model(bad)


def test_bare_state_dict_points_to_factory(tmp_path, model):
    sd = tmp_path / "sd.pt"
    torch.save(model.state_dict(), sd)
    with pytest.raises(InputError, match="--weights"):
        load_model(sd)


def test_torchscript_file(tmp_path, model):
    x = _inputs()
    path = tmp_path / "ts.pt"
    torch.jit.trace(model, (x,), strict=False).save(str(path))
    loaded = load_model(path)
    assert loaded.kind == "torchscript" and not loaded.reencodable
    assert torch.allclose(loaded.module(x), model(x), atol=1e-6)


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    """A user module `user_models.py` in the working directory with a factory."""
    (tmp_path / "user_models.py").write_text(
        textwrap.dedent(
            """
            import torch

            class Avg(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lin = torch.nn.Linear(6, 3)

                def forward(self, inputs):
                    return self.lin(inputs["v"])

            def make():
                return Avg()

            not_callable = 3
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("user_models", None)


def test_factory_with_weights(factory_module):
    torch.manual_seed(1)
    lin = torch.nn.Linear(6, 3)
    torch.save({"lin." + k: v for k, v in lin.state_dict().items()}, factory_module / "w.pt")
    loaded = load_model("user_models:make", weights="w.pt")
    assert loaded.kind == "factory" and not loaded.reencodable
    x = _inputs()
    assert torch.equal(loaded.module(x), lin(x["v"]))


def test_factory_errors(factory_module):
    with pytest.raises(InputError, match="cannot import module"):
        load_model("no_such_module_xyz:make")
    with pytest.raises(InputError, match="no callable 'not_callable'"):
        load_model("user_models:not_callable")
    torch.save({"other.weight": torch.zeros(2)}, factory_module / "wrong.pt")
    with pytest.raises(InputError, match="does not match"):
        load_model("user_models:make", weights="wrong.pt")
    with pytest.raises(InputError, match="no such file"):
        load_model("user_models:make", weights="absent.pt")


def test_weights_only_for_factories(saved):
    with pytest.raises(InputError, match="module:factory"):
        load_model(saved, weights=saved)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_holding_nan_or_inf_are_refused_at_load(tmp_path, model, bad, factory_module):
    key = next(k for k, v in model.state_dict().items() if v.dtype.is_floating_point)
    with torch.no_grad():
        model.state_dict()[key].view(-1)[0] = bad
    path = save_checkpoint(model, tmp_path / "nan.pt", {"dataset": "toy"})
    with pytest.raises(InputError, match=rf"checkpoint .*nan.pt: weight '{key}' holds 1 NaN/Inf value\(s\)"):
        load_model(path)
    scripted = tmp_path / "nan_ts.pt"
    torch.jit.trace(model, (_inputs(),), strict=False).save(str(scripted))
    with pytest.raises(InputError, match=rf"TorchScript file .*nan_ts.pt: weight '{key}' holds 1 NaN/Inf"):
        load_model(scripted)
    torch.save({"lin.weight": torch.full((3, 6), bad), "lin.bias": torch.zeros(3)}, factory_module / "nan_w.pt")
    with pytest.raises(InputError, match=r"weights file nan_w.pt: weight 'lin.weight' holds 18 NaN/Inf"):
        load_model("user_models:make", weights="nan_w.pt")


def test_factory_without_weights_needs_random_weights(factory_module):
    with pytest.raises(InputError, match=r"no --weights given.*random initial weights.*--random-weights"):
        load_model("user_models:make")
    assert load_model("user_models:make", random_weights=True).kind == "factory"


def test_weight_mismatch_names_keys_in_whole_words(factory_module):
    state = {f"extra_{i}.weight": torch.zeros(1) for i in range(5)} | {"lin.weight": torch.zeros(4, 6)}
    torch.save(state, factory_module / "mismatch.pt")
    with pytest.raises(InputError) as e:
        load_model("user_models:make", weights="mismatch.pt")
    assert str(e.value).endswith(
        "1 missing key(s) (lin.bias); 5 unexpected key(s) (extra_0.weight, extra_1.weight, extra_2.weight and 2 more); "
        "1 shape mismatch(es) (lin.weight (4, 6) vs (3, 6) in the model)"
    )


def test_clipped_messages_end_at_a_word_boundary():
    from robustbench_mm.models.checkpoint import _clip

    text = "PytorchStreamReader failed reading zip archive: failed finding central directory " * 3
    clipped = _clip(text)
    assert clipped.endswith(" ...") and text.startswith(clipped[: -len(" ...")])
    assert text[len(clipped) - len(" ...")] == " "  # the cut fell between two words
    assert _clip("short") == "short"
