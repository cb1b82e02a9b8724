"""Model cards and adapters: the field's model shapes evaluated with no wrapper file (issue 21).

Two models are written as their repositories write them: an OGM-GE/PMR-style
`AVClassifier.forward(audio, visual) -> (a, v, out)` that reads a log-spectrogram (made by a
preprocess hook from the corrupted waveform), and an RGB-D `forward(rgb, depth)`. Each is
evaluated from a TOML card in its own folder and must give, cell for cell and sample for sample,
what a hand-written `Dict[str, Tensor] -> logits` wrapper gives. `torch.export` programs (.pt2)
load beside TorchScript, with the pickled parts of the archive checked first.
"""

from __future__ import annotations

import io
import json
import sys
import textwrap
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_mm.cli import main
from robustbench_mm.datasets import load_dataset
from robustbench_mm.engine import evaluate
from robustbench_mm.errors import InputError
from robustbench_mm.models import load_model

N = 24
FIELD_MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn


    def log_spectrogram(waveform):
        # (B, T) waveform -> (B, 1, F, frames) log-magnitude spectrogram, as AV models read audio
        spec = torch.stft(waveform, n_fft=32, hop_length=16, window=torch.hann_window(32, device=waveform.device),
                          return_complex=True)
        return torch.log(spec.abs() + 1e-6).unsqueeze(1)


    class AVClassifier(nn.Module):
        # OGM-GE's shape: two encoders, concat fusion, forward(audio, visual) -> (a, v, out)
        def __init__(self, classes=4):
            super().__init__()
            self.audio_net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
            self.visual_net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
            self.fusion = nn.Linear(32, classes)

        def forward(self, audio, visual):
            a = self.audio_net(audio)
            v = self.visual_net(visual)
            out = self.fusion(torch.cat([a, v], dim=1))
            return a, v, out


    class RGBDNet(nn.Module):
        def __init__(self, classes=4):
            super().__init__()
            self.rgb = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.depth = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(8, classes)

        def forward(self, rgb, depth):
            return {"features": rgb, "logits": self.head(torch.cat([self.rgb(rgb), self.depth(depth)], dim=1))}


    def build_av():
        return AVClassifier()


    def build_rgbd():
        return RGBDNet()
    """
)
AV_CARD = """\
factory = "fieldmodels:build_av"
weights = "av_state.pt"
inputs = ["audio", "visual"]
output = 2
[preprocess]
audio = "fieldmodels:log_spectrogram"
"""
RGBD_CARD = """\
name = "rgbd-net"
factory = "fieldmodels:build_rgbd"
weights = "rgbd_state.pt"
inputs = {color = "rgb", depth = "depth"}
output = "logits"
"""


@pytest.fixture
def field(tmp_path, monkeypatch):
    """Cards, module and weights in `cards/`; the data in the working directory (another folder)."""
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 4
    t = np.arange(256) / 256.0
    audio = np.sin(2 * np.pi * (4 + 4 * labels[:, None]) * t) + 0.1 * rng.normal(size=(N, 256))
    np.savez(
        tmp_path / "av.npz", audio=audio.astype(np.float32),
        visual=rng.uniform(size=(N, 3, 8, 8)).astype(np.float32), labels=labels,
    )
    np.savez(
        tmp_path / "rgbd.npz", color=rng.uniform(size=(N, 3, 8, 8)).astype(np.float32),
        depth=rng.uniform(size=(N, 1, 8, 8)).astype(np.float32), labels=labels,
    )
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "fieldmodels.py").write_text(FIELD_MODELS)
    (cards / "av.toml").write_text(AV_CARD)
    (cards / "rgbd.toml").write_text(RGBD_CARD)
    sys.path.insert(0, str(cards))
    try:
        import fieldmodels

        torch.manual_seed(3)
        torch.save(fieldmodels.build_av().state_dict(), cards / "av_state.pt")
        torch.save(fieldmodels.build_rgbd().state_dict(), cards / "rgbd_state.pt")
    finally:
        sys.path.remove(str(cards))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("fieldmodels", None)


class HandAV(torch.nn.Module):
    """What a user writes today: the dict-to-arguments wrapper with the spectrogram inside."""

    def __init__(self, module):
        super().__init__()
        self.inner = module.build_av()
        self.inner.load_state_dict(torch.load("cards/av_state.pt", weights_only=True))
        self.spectrogram = module.log_spectrogram

    def forward(self, inputs):
        return self.inner(self.spectrogram(inputs["audio"]), inputs["visual"])[2]


class HandRGBD(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.inner = module.build_rgbd()
        self.inner.load_state_dict(torch.load("cards/rgbd_state.pt", weights_only=True))

    def forward(self, inputs):
        return self.inner(rgb=inputs["color"], depth=inputs["depth"])["logits"]


def _cells(run) -> pd.DataFrame:
    return run.cells.drop(columns=["cell_id", "model", "seconds"]).reset_index(drop=True)


def _same_records(a, b) -> None:
    for ca, cb in zip(a.cells["cell_id"], b.cells["cell_id"]):
        ra, rb = a.samples(ca), b.samples(cb)
        assert ra.keys() == rb.keys()
        for k in ra:
            np.testing.assert_array_equal(ra[k], rb[k], err_msg=f"{ca}: {k}")


@pytest.mark.parametrize("card, data, hand", [("av", "av.npz", HandAV), ("rgbd", "rgbd.npz", HandRGBD)])
def test_card_matches_a_hand_written_wrapper_cell_for_cell(field, card, data, hand):
    kinds = {"audio": "audio"} if card == "av" else {}
    dataset = load_dataset(data, "test", kinds=kinds)
    from_card = evaluate([load_model(f"cards/{card}.toml")], dataset, "quick", out=field / "card", device="cpu", progress=False)
    module = sys.modules["fieldmodels"]
    wrapped = evaluate([hand(module)], dataset, "quick", out=field / "hand", device="cpu", progress=False)
    assert len(from_card.cells) > 10  # corruptions of each modality and removals, not only the clean cell
    if card == "av":
        assert {"white_noise", "gaussian_noise", "gaussian_blur"} <= set(from_card.cells["name"])
    pd.testing.assert_frame_equal(_cells(from_card), _cells(wrapped))
    _same_records(from_card, wrapped)


def test_the_preprocess_hook_sees_the_corrupted_waveform(field):
    """The spectrogram is computed after the perturbation: audio noise changes the model's answers."""
    dataset = load_dataset("av.npz", "test", kinds={"audio": "audio"})
    run = evaluate([load_model("cards/av.toml")], dataset, "quick", out=field / "r", device="cpu", progress=False)
    cells = run.cells
    clean = run.samples(cells[cells["family"] == "clean"]["cell_id"].iloc[0])["p_true"]
    noisy_cell = cells[(cells["name"] == "white_noise") & (cells["modalities"] == "audio") & (cells["level"] == 5)]
    noisy = run.samples(noisy_cell["cell_id"].iloc[0])["p_true"]
    assert not np.allclose(clean, noisy)


def test_cli_evaluates_a_card_and_records_it(field, capsys):
    code = main(["eval", "cards/av.toml", "--data", "av.npz", "--kind", "audio=audio", "--protocol", "quick",
                 "--out", "run", "--quiet", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    import hashlib

    model = json.loads((field / "run" / "manifest.json").read_text())["models"][0]
    assert model["name"] == "av" and model["sha256"] == hashlib.sha256((field / "cards" / "av_state.pt").read_bytes()).hexdigest()
    assert model["config"]["card"]["inputs"] == ["audio", "visual"] and model["config"]["card"]["output"] == 2
    assert model["config"]["sources"] == {"fieldmodels": hashlib.sha256((field / "cards" / "fieldmodels.py").read_bytes()).hexdigest()}
    assert model["config"]["adapter"] == {"inputs": ["audio", "visual"], "output": 2, "preprocess": {"audio": "fieldmodels:log_spectrogram"}}
    # forward(audio, visual) never sees the presence mask, and the input contract says so
    assert json.loads((field / "run" / "manifest.json").read_text())["inputs"]["presence_mask"] == {"av": False}


def test_cli_shortcuts_adapt_a_single_factory_model(field, capsys):
    """--inputs/--output/--preprocess say for one model what a card says; the cells are the card's."""
    common = ["--data", "av.npz", "--kind", "audio=audio", "--protocol", "quick", "--quiet", "--device", "cpu"]
    assert main(["eval", "cards/av.toml", *common, "--out", "card"]) == 0
    sys.modules.pop("fieldmodels", None)
    (field / "fieldmodels.py").write_text(FIELD_MODELS)
    flags = ["--inputs", "audio,visual", "--output", "2", "--preprocess", "audio=fieldmodels:log_spectrogram"]
    assert main(["eval", "av=fieldmodels:build_av@cards/av_state.pt", *flags, *common, "--out", "flags"]) == 0
    capsys.readouterr()
    card, flags_run = (pd.read_csv(field / d / "cells.csv").drop(columns=["seconds"]) for d in ("card", "flags"))
    pd.testing.assert_frame_equal(card, flags_run)


def test_a_tuple_of_features_and_logits_needs_output(field, capsys):
    """Without `output`, OGM-GE's (a, v, out) would have scored its audio features as 16 'classes'."""
    (field / "cards" / "no_output.toml").write_text(AV_CARD.replace("output = 2\n", ""))
    code = main(["eval", "cards/no_output.toml", "--data", "av.npz", "--kind", "audio=audio", "--protocol", "quick",
                 "--out", "r", "--quiet", "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("rbmm: note: ")]
    assert code == 2 and len(err) == 1
    assert "returned a tuple of tensors shaped (2, 16), (2, 16), (2, 4); say which one is the logits" in err[0]


@pytest.mark.parametrize(
    "card, expected",
    [
        ("colour = 3\n" + AV_CARD, "unknown field 'colour'; expected fields: name, factory, file, weights, inputs, output, preprocess"),
        (AV_CARD.replace("av_state.pt", "nowhere.pt"), "weights file 'nowhere.pt' not found next to the card"),
        (AV_CARD.replace("output = 2", "output = 5"), "output = 5, but it returned a tuple of 3 item(s); expected an index 0..2"),
        (AV_CARD.replace("output = 2", 'output = "logits"'), "output = 'logits', but it returned a tuple, not a dict"),
        (AV_CARD.replace('"visual"]', '"video"]'), "its adapter names modality 'video', which the dataset does not have"),
        (AV_CARD.replace("log_spectrogram\"", "mel\""), "preprocess audio: module 'fieldmodels' has no callable 'mel'"),
        (AV_CARD.replace('factory = "fieldmodels:build_av"', 'file = "av.pt2"'), "weights is for a factory"),
        ('file = "absent.pt2"\n', "file 'absent.pt2' not found next to the card"),
        ("inputs = [\n", "not valid TOML"),
        ('weights = "av_state.pt"\n', "give exactly one of `factory"),
        (AV_CARD.replace("output = 2", "output = -1"), "output -1; expected a tuple index (an integer >= 0) or a dict key"),
    ],
)
def test_bad_cards_are_one_line(field, capsys, card, expected):
    (field / "cards" / "bad.toml").write_text(card)
    code = main(["eval", "cards/bad.toml", "--data", "av.npz", "--kind", "audio=audio", "--protocol", "quick",
                 "--out", "r", "--quiet", "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("rbmm: note: ")]
    assert code == 2 and len(err) == 1 and err[0].startswith("rbmm: error: "), err
    assert expected in err[0]


def test_card_of_our_checkpoint_keeps_the_encode_fuse_fast_path(tmp_path):
    from robustbench_mm.models import build_model, save_checkpoint

    data = load_dataset("synthetic:samples=40", "test")
    model = build_model({"fusion": "concat", "specs": list(data.specs.values()), "num_classes": data.num_classes})
    save_checkpoint(model, tmp_path / "ours.pt")
    (tmp_path / "ours.toml").write_text('file = "ours.pt"\nname = "mine"\n')
    loaded = load_model(tmp_path / "ours.toml")
    assert loaded.reencodable and loaded.kind == "robustbench-mm" and loaded.name == "mine"


class DictModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3 * 8 * 8 + 8 * 8, 4)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lin(torch.cat([inputs["color"].flatten(1), inputs["depth"].flatten(1)], 1))


def _export(module, path, *example):
    batch = torch.export.Dim("batch", min=1)
    shapes = torch.utils._pytree.tree_map(lambda x: {0: batch}, example)
    torch.export.save(torch.export.export(module.eval(), example, dynamic_shapes=shapes), str(path))


def test_torch_export_program_evaluates_like_its_module(field):
    module = DictModel()
    example = ({"color": torch.rand(2, 3, 8, 8), "depth": torch.rand(2, 1, 8, 8)},)
    _export(module, field / "dict.pt2", *example)
    loaded = load_model(field / "dict.pt2")
    assert loaded.kind == "export" and loaded.name == "dict"
    dataset = load_dataset("rgbd.npz", "test")
    a = evaluate([loaded], dataset, "quick", out=field / "a", device="cpu", progress=False)
    b = evaluate([module], dataset, "quick", out=field / "b", device="cpu", progress=False)
    pd.testing.assert_frame_equal(_cells(a), _cells(b))


def test_torch_export_program_of_a_field_model_from_a_card(field):
    """A .pt2 exported from RGBDNet(rgb, depth) with positional arguments takes them in that order."""
    module = sys.modules.get("fieldmodels") or _import_fieldmodels(field)
    net = HandRGBD(module).inner
    _export(net, field / "cards" / "rgbd.pt2", torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8))
    (field / "cards" / "rgbd_pt2.toml").write_text('file = "rgbd.pt2"\ninputs = ["color", "depth"]\noutput = "logits"\n')
    dataset = load_dataset("rgbd.npz", "test")
    a = evaluate([load_model("cards/rgbd_pt2.toml")], dataset, "quick", out=field / "a", device="cpu", progress=False)
    b = evaluate([HandRGBD(module)], dataset, "quick", out=field / "b", device="cpu", progress=False)
    pd.testing.assert_frame_equal(_cells(a), _cells(b))


def _import_fieldmodels(field):
    sys.path.insert(0, str(field / "cards"))
    try:
        import fieldmodels

        return fieldmodels
    finally:
        sys.path.remove(str(field / "cards"))


class _Boom:
    """Unpickling this runs code: what a malicious archive would hold."""

    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_torch_export_archive_with_a_code_pickle_is_refused_without_trust(tmp_path, capsys):
    module = DictModel()
    _export(module, tmp_path / "good.pt2", {"color": torch.rand(2, 3, 8, 8), "depth": torch.rand(2, 1, 8, 8)})
    evil = io.BytesIO()
    torch.save(_Boom(), evil)
    with zipfile.ZipFile(tmp_path / "good.pt2") as src, zipfile.ZipFile(tmp_path / "evil.pt2", "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data/sample_inputs/model.pt"):
                data = evil.getvalue()
            dst.writestr(item, data)
    with pytest.raises(InputError, match=r"torch.export file .*evil.pt2: data/sample_inputs/model.pt would be unpickled "
                                         r"with code execution allowed; pass --trust-checkpoint only if"):
        load_model(tmp_path / "evil.pt2")
    assert "pickled code ran" not in capsys.readouterr().out


def test_torchscript_load_shows_no_deprecation_warning(tmp_path, recwarn):
    torch.jit.script(DictModel()).save(str(tmp_path / "m.ts"))
    recwarn.clear()
    assert load_model(tmp_path / "m.ts").kind == "torchscript"
    assert not [w for w in recwarn if "torch.jit.load" in str(w.message)]


def test_cli_keyword_inputs_and_dict_output_match_the_card(field, capsys):
    common = ["--data", "rgbd.npz", "--protocol", "quick", "--quiet", "--device", "cpu"]
    assert main(["eval", "rgbd-net=cards/rgbd.toml", *common, "--out", "card"]) == 0
    sys.modules.pop("fieldmodels", None)
    (field / "fieldmodels.py").write_text(FIELD_MODELS)
    flags = ["--inputs", "color=rgb,depth=depth", "--output", "logits"]
    assert main(["eval", "rgbd-net=fieldmodels:build_rgbd@cards/rgbd_state.pt", *flags, *common, "--out", "flags"]) == 0
    capsys.readouterr()
    card, flags_run = (pd.read_csv(field / d / "cells.csv").drop(columns=["seconds"]) for d in ("card", "flags"))
    pd.testing.assert_frame_equal(card, flags_run)


@pytest.mark.parametrize(
    "models, flags, expected",
    [
        (["cards/av.toml", "cards/rgbd.toml"], ["--output", "2"], "--inputs/--output/--preprocess adapt one model; 2 given"),
        (["cards/av.toml"], ["--output", "2"], "comes from a model card; state them in the card"),
        (["cards/av.toml"], ["--weights", "cards/av_state.pt"], "--weights given 1 time(s) for 0 module:factory model(s)"),
        (["x=fieldmodels:build_av@cards/av_state.pt"], ["--inputs", "audio,visual=v"], "expected NAME,NAME (positional) or NAME=KEYWORD"),
        (["x=fieldmodels:build_av@cards/av_state.pt"], ["--preprocess", "audio"], "--preprocess 'audio': expected NAME=MODULE:FUNCTION"),
    ],
)
def test_bad_adapter_flags_are_one_line(field, capsys, models, flags, expected):
    code = main(["eval", *models, *flags, "--data", "av.npz", "--kind", "audio=audio", "--protocol", "quick",
                 "--out", "r", "--quiet", "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("rbmm: note: ")]
    assert code == 2 and len(err) == 1 and expected in err[0], err
