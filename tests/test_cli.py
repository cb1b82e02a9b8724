"""The `rbmm` command: bad input is one line on stderr and exit code 2, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_mm.cli import main
from robustbench_mm.demo import zoo_entries

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "results" / "baselines" / "mfeat-concat.pt"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("rbmm: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["eval", "no/such/model.pt", "--out", "OUT"], "no/such/model.pt"),
        (["eval", str(CHECKPOINT), "--data", "nope", "--out", "OUT"], "nope"),
        (["eval", str(CHECKPOINT), "--protocol", "nope", "--out", "OUT"], "protocol"),
        (["eval", str(CHECKPOINT), "--data", "synthetic", "--out", "OUT"], "modalit"),
        (["train", "--fusion", "bogus", "--out", "OUT/x.pt"], "bogus"),
        (["show", "protocol", "nope"], "nope"),
        (["report", "no/such/run", "-o", "OUT/r"], "no/such/run"),
        (["baseline", "no/such/run", "-o", "OUT/b.json"], "no/such/run"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    assert main(argv) == 2
    assert expected in _one_line_error(capsys)


def test_corrupt_checkpoint_and_nan_features(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(CHECKPOINT.read_bytes()[:1000])
    assert main(["eval", str(truncated), "--out", str(tmp_path / "o1")]) == 2
    assert "truncated.pt" in _one_line_error(capsys)

    features = tmp_path / "features.npz"
    x = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    x[3, 2] = np.nan
    np.savez(features, a=x, labels=np.arange(20) % 2)
    assert main(["eval", str(CHECKPOINT), "--data", str(features), "--out", str(tmp_path / "o2")]) == 2
    assert "nan" in _one_line_error(capsys).lower()


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "robustbench_mm", "--debug", "eval", "missing.pt", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "InputError" in proc.stderr


def test_list_and_show(capsys):
    assert main(["list", "corruptions"]) == 0
    listed = capsys.readouterr().out
    assert "gaussian_noise" in listed and "blank" in listed
    assert main(["list", "protocols"]) == 0
    assert {"quick", "standard", "qmf", "udml"} <= {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert main(["show", "protocol", "quick"]) == 0
    assert "cells per model" in capsys.readouterr().out


def test_plugin_from_the_working_directory_appears_in_list(tmp_path, capsys, monkeypatch):
    (tmp_path / "corruptions").mkdir()
    (tmp_path / "corruptions" / "dim_light.py").write_text(
        "from robustbench_mm.corruptions import corruption\n"
        "@corruption('dim_light_cli_test', kinds=('image',), severity=(0.1, 0.2, 0.3, 0.4, 0.5),\n"
        "            unit='fraction of range', description='underexposure')\n"
        "def dim_light(x, param, rng, spec):\n"
        "    low, high = spec.value_range\n"
        "    return (x - param * (high - low)).clamp(low, high)\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["list", "corruptions"]) == 0
    assert "dim_light_cli_test" in capsys.readouterr().out


def test_eval_under_torchrun_matches_one_process(tmp_path):
    """The README's multi-process command: 2 CPU ranks (gloo) give the single-process cells."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RBMM_DIST_BACKEND": "gloo"}
    common = ["eval", str(CHECKPOINT), "--protocol", "quick", "--quiet", "--device", "cpu"]
    dist = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "robustbench_mm",
         *common, "--out", str(tmp_path / "dist")],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert dist.returncode == 0, dist.stderr[-2000:]
    assert main([*common, "--out", str(tmp_path / "single")]) == 0
    dist_cells = pd.read_csv(tmp_path / "dist" / "cells.csv").drop(columns="seconds")
    single_cells = pd.read_csv(tmp_path / "single" / "cells.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(dist_cells, single_cells)
    files = sorted(p.name for p in (tmp_path / "single" / "samples").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "dist" / "samples").iterdir()) and len(files) == len(single_cells)
    for name in files:
        assert (tmp_path / "dist" / "samples" / name).read_bytes() == (tmp_path / "single" / "samples" / name).read_bytes()


@pytest.mark.parametrize("command", ["eval", "train"])
@pytest.mark.parametrize("device", ["mps", "meta", "gpu0", "cuda:99", "cpu:0"])
def test_unsupported_devices_are_refused_at_the_edge(command, device, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = {
        "eval": ["eval", str(CHECKPOINT), "--out", str(tmp_path / "run"), "--device", device],
        "train": ["train", "--fusion", "concat", "--out", str(tmp_path / "m.pt"), "--device", device],
    }[command]
    assert main(argv) == 2
    assert repr(device) in _one_line_error(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.pt").exists()


def test_cuda_without_cuda_is_refused(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["eval", str(CHECKPOINT), "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in _one_line_error(capsys)


@pytest.mark.parametrize("where", ["directory", "below-a-file", "read-only"])
def test_train_out_that_cannot_be_written_is_refused_before_training(where, tmp_path, read_only_dir, capsys):
    (tmp_path / "a-file").write_text("x")
    out = {"directory": tmp_path, "below-a-file": tmp_path / "a-file" / "m.pt", "read-only": read_only_dir / "m.pt"}[where]
    assert main(["train", "--fusion", "concat", "--out", str(out), "--quiet"]) == 2
    assert f"--out {out}" in _one_line_error(capsys)


@pytest.mark.parametrize("flag, where", [("--cache", "a-file"), ("--out", "below-a-file"), ("--report", "read-only")])
def test_demo_paths_that_cannot_be_written_are_refused_before_any_work(flag, where, tmp_path, read_only_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    path = {"a-file": tmp_path / "a-file", "below-a-file": tmp_path / "a-file" / "demo", "read-only": read_only_dir / "demo"}[where]
    assert main(["demo", "--fast", "--quiet", flag, str(path)]) == 2
    assert f"{flag} {path}" in _one_line_error(capsys)
    assert not (tmp_path / ".cache").exists() and not (tmp_path / "results").exists(), "nothing trained or evaluated"


@pytest.mark.slow
def test_demo_report_failure_keeps_the_runs_and_says_where(tmp_path, capsys, monkeypatch):
    """A report that fails after the evaluation (a file where its figures/ folder goes)."""
    monkeypatch.chdir(tmp_path)
    zoo = tmp_path / ".cache" / "rbmm-zoo" / "mfeat" / "seed-0"
    zoo.mkdir(parents=True)
    for entry in zoo_entries((0,), ["pix", "fou", "fac"]):
        (zoo / f"{entry.name}.pt").write_bytes(CHECKPOINT.read_bytes())  # a cached zoo: nothing to train
    (tmp_path / "reports" / "demo").mkdir(parents=True)
    (tmp_path / "reports" / "demo" / "figures").write_text("in the way")
    assert main(["demo", "--fast", "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert "kept in results/demo/seed-0" in err and "rbmm report results/demo/seed-0 -o" in err
    assert len(pd.read_csv(tmp_path / "results" / "demo" / "seed-0" / "cells.csv")) > 0


def test_models_are_named_by_name_flag_or_name_prefix(tmp_path, capsys):
    assert main(["eval", f"mine={CHECKPOINT}", "--protocol", CLEAN_ONLY, "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert set(pd.read_csv(tmp_path / "a" / "cells.csv")["model"]) == {"mine"}
    argv = ["eval", str(CHECKPOINT), str(CHECKPOINT), "--name", "first", "--name", "second", "--protocol", CLEAN_ONLY]
    assert main([*argv, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert list(pd.read_csv(tmp_path / "b" / "cells.csv")["model"]) == ["first", "second"]
    capsys.readouterr()
    for bad, expected in [
        (["eval", str(CHECKPOINT), "--name", "a", "--name", "b"], "one per model"),
        (["eval", f"x={CHECKPOINT}", "--name", "a"], "not both"),
        (["eval", str(CHECKPOINT), "--name", "has space"], "letters, digits"),
    ]:
        assert main([*bad, "--out", str(tmp_path / "c")]) == 2
        assert expected in _one_line_error(capsys)


CLEAN_ONLY = str(Path(__file__).resolve().parent / "data" / "clean-only.toml")


def test_plugins_flag_after_the_subcommand(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("before", "after"):
        (tmp_path / f"{name}.py").write_text(
            "from robustbench_mm.corruptions import corruption\n"
            f"@corruption('cli_flag_{name}', kinds=('image',), severity=(0.1, 0.2, 0.3, 0.4, 0.5),\n"
            "            unit='fraction of range', description='underexposure')\n"
            "def dim(x, param, rng, spec):\n"
            "    low, high = spec.value_range\n"
            "    return (x - param * (high - low)).clamp(low, high)\n"
        )
    assert main(["--plugins", "before.py", "list", "corruptions", "--plugins", "after.py"]) == 0
    listed = capsys.readouterr().out
    assert "cli_flag_before" in listed and "cli_flag_after" in listed


def test_module_factory_and_trusted_pickle_import_from_the_working_directory(tmp_path):
    """As the `rbmm` console script runs (its own folder first on sys.path, not the working
    directory), a model module in the working directory imports without PYTHONPATH=."""
    import importlib
    import torch

    (tmp_path / "mymodel.py").write_text(
        "import torch\n"
        "class Flat(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.head = torch.nn.Linear(240 + 76 + 216, 10)\n"
        "    def forward(self, inputs):\n"
        "        return self.head(torch.cat([inputs[k].flatten(1) for k in sorted(inputs)], 1))\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return Flat()\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("mymodel")
        torch.save(module.build(), tmp_path / "pickled.pt")
        torch.save(module.build().state_dict(), tmp_path / "weights.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mymodel", None)
    launcher = tmp_path / "bin" / "rbmm"
    launcher.parent.mkdir()
    launcher.write_text("import sys\nfrom robustbench_mm.cli import main\nsys.exit(main())\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for model in (["mymodel:build", "--weights", "weights.pt"], ["pickled.pt", "--trust-checkpoint"]):
        proc = subprocess.run(
            [sys.executable, str(launcher), "eval", *model, "--protocol", CLEAN_ONLY, "--out", f"run-{model[0][:6]}", "--quiet", "--device", "cpu"],
            capture_output=True, text=True, cwd=tmp_path, env=env,
        )
        assert proc.returncode == 0, proc.stderr[-1500:]


def test_report_out_that_is_a_file_is_refused_before_reading_runs(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    assert main(["report", "no/such/run", "-o", str(tmp_path / "a-file")]) == 2
    assert f"--out {tmp_path / 'a-file'}: is a file; expected a folder" in _one_line_error(capsys)


def test_list_protocols_warns_about_an_unreadable_file_and_lists_the_rest(tmp_path, capsys, monkeypatch):
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "bin.toml").write_bytes(b"\x00\x89PNG\xff\xfe")
    (tmp_path / "protocols" / "mine.toml").write_text('name = "mine"\ndescription = "my own"\n[[corruption]]\ncorruptions = ["gaussian_noise"]\nlevels = [1]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["list", "protocols"]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert {"quick", "standard", "mine"} <= set(rows) and "bin" not in rows
    assert rows["quick"].endswith("[builtin]") and rows["mine"].endswith(f"[{tmp_path / 'protocols' / 'mine.toml'}]")
    assert err.strip().splitlines() == [
        f"rbmm: warning: protocol {tmp_path / 'protocols' / 'bin.toml'}: not a text file (byte 1 is not UTF-8); "
        "expected a TOML protocol; skipped"
    ]


def test_list_without_a_kind_shows_every_registry_with_sources(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    headers = [line[:-1] for line in out.splitlines() if not line.startswith(" ")]
    assert headers[:4] == ["corruptions", "metrics", "backbones", "datasets"] and headers[-1] == "protocols"
    assert "  nll                classification, lower is better: " in out
    assert all(line.endswith("]") for line in out.splitlines() if line.startswith("  concat") or line.startswith("  mfeat "))
    assert main(["list", "models"]) == 2
    err = capsys.readouterr().err
    expected = "backbones, condition_families, corruptions, datasets, metrics, protocols"
    assert f"unknown thing to list 'models'; expected one of: {expected}" in err
