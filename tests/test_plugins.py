"""Plug-in discovery and the contract check at load: good plug-ins register, bad ones are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustbench_mm.corruptions import get_corruption, list_corruptions
from robustbench_mm.corruptions.plugins import load_plugins
from robustbench_mm.errors import InputError

REPO = Path(__file__).resolve().parents[1]

HEADER = "import torch\nfrom robustbench_mm.corruptions import corruption\n"


def _plugin(tmp_path: Path, name: str, body: str, kinds: str = '("vector",)') -> Path:
    path = tmp_path / f"{name}.py"
    lines = [
        f'@corruption("{name}", kinds={kinds}, severity=(1, 2, 3, 4, 5), unit="u", description="d")',
        "def fn(x, param, rng, spec):",
    ] + ["    " + line for line in body.splitlines()]
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def test_example_plugin_is_discovered_in_the_working_directory(monkeypatch):
    monkeypatch.chdir(REPO)
    assert "rain" in load_plugins(entry_points=False)
    spec = get_corruption("rain")
    assert spec.source.endswith("corruptions/rain.py") and spec.kinds == ("image",)
    assert "rain" in [s.name for s in list_corruptions("image")]


def test_good_plugin_from_a_path_registers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./corruptions/ here: only the given path is loaded
    path = _plugin(tmp_path, "tp_offset", "return x + 0.1 * param * rng.normal(*x.shape[1:], dtype=x.dtype)")
    assert load_plugins([str(tmp_path)], entry_points=False) == ["tp_offset"]
    assert get_corruption("tp_offset").source == str(path)
    assert load_plugins([str(path)], entry_points=False) == ["tp_offset"], "loading twice is a no-op"


@pytest.mark.parametrize(
    "name,body,rule",
    [
        ("tp_shape", "return x[:, :-1]", "preserve shape and dtype"),
        ("tp_nan", "return x + param * float('nan')", "finite"),
        ("tp_mutate", "x.add_(param)\nreturn x", "never mutate the input"),
        ("tp_global_rng", "return x + param * torch.randn_like(x)", "deterministic under the same SampleRandom"),
        ("tp_not_identity", "return x + 1.0", "return the input unchanged at level 0"),
        ("tp_raises", "raise RuntimeError('boom')", "run on a valid vector input, but it raises on one: RuntimeError: boom"),
    ],
)
def test_contract_breaking_plugin_is_rejected_and_unregistered(tmp_path, name, body, rule):
    path = _plugin(tmp_path, name, body)
    with pytest.raises(InputError, match=f"plug-in {path}: corruption '{name}' rejected: it must .*{rule}"):
        load_plugins([str(path)], entry_points=False)
    assert name not in [s.name for s in list_corruptions()]


def test_value_range_is_checked_on_the_kinds_a_plugin_claims(tmp_path):
    path = _plugin(tmp_path, "tp_range", "return x + param", kinds='("audio",)')
    with pytest.raises(InputError, match=r"keep the value range \[-1.0, 1.0\] \(audio\)"):
        load_plugins([str(path)], entry_points=False)


def test_import_failure_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import not_a_module_xyz\n")
    with pytest.raises(InputError) as err:
        load_plugins([str(path)], entry_points=False)
    assert str(err.value) == f"plug-in {path} failed to import: ModuleNotFoundError: No module named 'not_a_module_xyz'"
    with pytest.raises(InputError, match="plug-in path .*nowhere.py not found"):
        load_plugins([str(tmp_path / "nowhere.py")], entry_points=False)


def test_bad_decorator_arguments_name_the_file(tmp_path):
    path = tmp_path / "badkind.py"
    path.write_text(HEADER + '@corruption("tp_bad", kinds=("video",), severity=(1,2,3,4,5), unit="u", description="d")\n'
                    "def f(x, p, r, s):\n    return x\n")
    with pytest.raises(InputError, match=f"plug-in {path}: corruption 'tp_bad': unknown modality kind 'video'"):
        load_plugins([str(path)], entry_points=False)


def test_entry_point_plugins_are_discovered(tmp_path, monkeypatch):
    """A pip-installed package: a dist-info folder on sys.path declaring the entry-point group."""
    pkg = tmp_path / "tp_pkg_mod.py"
    pkg.write_text(HEADER + '@corruption("tp_entry", kinds=("tokens",), severity=(1,2,3,4,5), unit="u", description="d")\n'
                   "def f(x, p, r, s):\n    return x.clone()\n")
    info = tmp_path / "tp_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tp-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[robustbench_mm.corruptions]\ntp = tp_pkg_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "tp_entry" in load_plugins()
    assert get_corruption("tp_entry").source == "entry point tp = tp_pkg_mod"


# --------------------------------------------------------------------------- fault cases (issue 11)


def test_rejection_messages_are_grammatical(tmp_path):
    path = _plugin(tmp_path, "tp_nan_words", "return x + param * float('nan')")
    with pytest.raises(InputError) as e:
        load_plugins([str(path)], entry_points=False)
    assert str(e.value) == f"plug-in {path}: corruption 'tp_nan_words' rejected: it must return finite values (no NaN/Inf) (vector)"


def test_one_broken_file_in_corruptions_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    from robustbench_mm.cli import main

    folder = tmp_path / "corruptions"
    folder.mkdir()
    _plugin(folder, "tp_fine", "return x + 0.0 * param")
    broken = _plugin(folder, "tp_broken", "return x[:, :-1]")
    (folder / "tp_syntax.py").write_text("def (:\n")
    monkeypatch.chdir(tmp_path)
    assert main(["list", "corruptions"]) == 0
    out, err = capsys.readouterr()
    assert "tp_fine" in out and "tp_broken" not in out and "gaussian_noise" in out
    assert f"rbmm: warning: plug-in {broken}: corruption 'tp_broken' rejected: it must preserve shape and dtype" in err
    assert "tp_syntax.py failed to import: SyntaxError" in err
    assert main(["list", "protocols"]) == 0
    (tmp_path / "p.toml").write_text('name = "p"\ndescription = "d"\n[[corruption]]\ncorruptions = ["tp_broken"]\nlevels = [1]\n')
    assert main(["show", "protocol", "p.toml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rbmm: error: protocol p.toml: key 'corruption[0].corruptions': unknown corruption 'tp_broken'")
    assert err.endswith("rejected: it must preserve shape and dtype (expected (6, 7) torch.float32) (vector)")


def test_symlink_loop_in_a_plugin_folder(tmp_path, monkeypatch, capsys):
    from robustbench_mm.cli import main

    folder = tmp_path / "corruptions"
    folder.mkdir()
    (folder / "loop.py").symlink_to(folder / "loop.py")
    monkeypatch.chdir(tmp_path)
    assert main(["list", "corruptions"]) == 0
    assert "loop.py cannot be read (a symlink loop)" in capsys.readouterr().err
    assert main(["--plugins", str(folder / "loop.py"), "list", "corruptions"]) == 2
    assert capsys.readouterr().err.strip() == f"rbmm: error: plug-in {folder / 'loop.py'} cannot be read (a symlink loop)"


def test_a_plugin_reregistering_a_builtin_exits_2(tmp_path, monkeypatch, capsys):
    from robustbench_mm.cli import main

    path = _plugin(tmp_path, "gaussian_noise", "return x.clone()")
    monkeypatch.chdir(tmp_path)
    assert main(["--plugins", str(path), "list", "corruptions"]) == 2
    assert capsys.readouterr().err.strip() == f"rbmm: error: plug-in {path}: corruption 'gaussian_noise' is already registered by builtin"
    # from ./corruptions/ too: skipping it would run the built-in where the user meant theirs
    (tmp_path / "corruptions").mkdir()
    local = _plugin(tmp_path / "corruptions", "gaussian_noise", "return x.clone()")
    assert main(["list", "corruptions"]) == 2  # (`list protocols` loads no plug-in: they add no protocol)
    assert capsys.readouterr().err.strip() == f"rbmm: error: plug-in {local}: corruption 'gaussian_noise' is already registered by builtin"
    assert get_corruption("gaussian_noise").source == "builtin"


def test_plugins_a_protocol_can_select_enter_its_hash_and_the_manifest(tmp_path, monkeypatch):
    import hashlib

    from robustbench_mm.protocols import parse_protocol

    text = 'name = "all"\ndescription = "d"\n[[corruption]]\ncorruptions = "kind:sequence"\nlevels = [1]\n'
    named = 'name = "n"\ndescription = "d"\n[[corruption]]\ncorruptions = ["gaussian_noise"]\nlevels = [1]\n'
    before, before_named = parse_protocol(text), parse_protocol(named)
    path = _plugin(tmp_path, "tp_seq_hash", "return x + 0.0 * param", kinds='("sequence",)')
    load_plugins([str(path)], entry_points=False)
    after = parse_protocol(text)
    assert after.hash != before.hash and parse_protocol(named).hash == before_named.hash
    assert after.plugins == ({"name": "tp_seq_hash", "source": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()},)
    assert before_named.plugins == ()


def test_a_run_records_the_plugins_that_shaped_its_protocol(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_engine import TinyFusion, tiny_data

    from robustbench_mm.engine import evaluate
    from robustbench_mm.protocols import parse_protocol

    path = _plugin(tmp_path, "tp_vec_run", "return x + 0.01 * param", kinds='("vector",)')
    load_plugins([str(path)], entry_points=False)
    protocol = parse_protocol('name = "p"\ndescription = "d"\n[[corruption]]\ncorruptions = ["tp_vec_run"]\nlevels = [2]\n')
    data = tiny_data()
    run = evaluate([TinyFusion(data.specs)], data, protocol, out=tmp_path / "r", device="cpu", progress=False)
    assert run.manifest.plugins == ({"name": "tp_vec_run", "source": str(path), "sha256": protocol.plugins[0]["sha256"]},)
    assert run.manifest.protocol.hash == protocol.hash and run.manifest.complete is True


def test_rejections_are_those_of_the_latest_discovery(tmp_path, monkeypatch, capsys):
    """A broken plug-in of one working directory is not warned about in another (it used to leak
    into every later command's stderr, e.g. the gate's one-line errors)."""
    from robustbench_mm.cli import main
    from robustbench_mm.corruptions.plugins import rejected_plugins

    broken_dir, clean_dir = tmp_path / "a", tmp_path / "b"
    (broken_dir / "corruptions").mkdir(parents=True)
    (clean_dir / "corruptions").mkdir(parents=True)  # a plug-in folder with nothing broken in it
    broken = _plugin(broken_dir / "corruptions", "tp_stale", "return x[:, :-1]")
    monkeypatch.chdir(broken_dir)
    load_plugins(entry_points=False)
    assert list(rejected_plugins()) == [str(broken)]
    load_plugins(entry_points=False)  # found again: retried, and rejected again
    assert list(rejected_plugins()) == [str(broken)]
    monkeypatch.chdir(clean_dir)
    capsys.readouterr()
    assert main(["list", "corruptions"]) == 0  # a command that discovers plug-ins (`list protocols` does not)
    assert rejected_plugins() == {}
    assert "warning" not in capsys.readouterr().err
