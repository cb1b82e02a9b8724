"""Issue 24, data loss: one writer per run folder, every written file whole or absent, a resumed
run that keeps its timings and re-evaluates damaged records (docs/faults.md).

The runs are the small TorchScript model and seeded .npz of test_fault_cases.py.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import robustbench_mm.atomic as atomic
import robustbench_mm.results as results
from test_fault_cases import Linear, _eval, _one_line_error, _rbmm, _script, here  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]


def _records(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "samples").glob("*.npz"))}


def _holder(folder: Path) -> subprocess.Popen:
    """Another process that holds the run folder's lock until its stdin closes."""
    script = textwrap.dedent(f"""
        import sys
        from robustbench_mm.results import lock_folder
        lock_folder({str(folder)!r})
        print("locked", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_writer_is_refused_naming_the_holder(here, capsys):
    model = _script(Linear(), here / "m.pt")
    (here / "r").mkdir()
    holder = _holder(here / "r")
    try:
        line = _one_line_error(*_rbmm(capsys, *_eval(model, "--out", "r"))[::2])
        assert f"being written by another rbmm process (PID {holder.pid})" in line
        assert not (here / "r" / "manifest.json").exists()
    finally:
        holder.stdin.close()
        holder.wait()
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0


def test_only_the_temporary_files_of_killed_writers_are_removed(here, capsys):
    model = _script(Linear(), here / "m.pt")
    (here / "r" / "samples").mkdir(parents=True)
    running = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        live = here / "r" / "samples" / f".m__s0__clean.npz.tmp{running.pid}"
        dead = here / "r" / "samples" / f".m__s0__clean.npz.tmp{_dead_pid()}"
        live.write_bytes(b"half")
        dead.write_bytes(b"half")
        code, _, err = _rbmm(capsys, *_eval(model, "--out", "r"))
        assert code == 0, err
        assert live.read_bytes() == b"half" and not dead.exists()
    finally:
        running.stdin.close()
        running.wait()


def test_the_lock_is_released_when_eval_ends_or_fails(here, capsys):
    model = _script(Linear(), here / "m.pt")
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    _one_line_error(*_rbmm(capsys, *_eval(model, "--out", "r", "--seeds", "3"))[::2])  # a different run: refused
    fd = results.lock_folder(here / "r")  # neither run still holds it
    results.os.close(fd)


def test_resume_keeps_the_time_of_every_cell(here, capsys):
    """Killed after a record was written but before the manifest took its time: that cell is
    evaluated again, so cells.csv has no NaN seconds."""
    model = _script(Linear(), here / "m.pt")
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    records = _records(here / "r")
    manifest = json.loads((here / "r" / "manifest.json").read_text())
    lost = sorted(manifest["cell_seconds"])[0]
    del manifest["cell_seconds"][lost]
    manifest["complete"] = False
    (here / "r" / "manifest.json").write_text(json.dumps(manifest))
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    cells = pd.read_csv(here / "r" / "cells.csv")
    assert cells["seconds"].notna().all() and lost in json.loads((here / "r" / "manifest.json").read_text())["cell_seconds"]
    assert _records(here / "r") == records


def _zero_bytes(data: bytes) -> bytes:
    return b""


def _flip_middle_byte(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


def _truncate(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def _flip_each_data_byte(data: bytes):
    return [data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:] for i in range(40, len(data) - 120, 37)]


@pytest.mark.parametrize("damage", [_zero_bytes, _flip_middle_byte, _truncate])
def test_a_damaged_record_is_evaluated_again(here, capsys, damage):
    model = _script(Linear(), here / "m.pt")
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    records = _records(here / "r")
    victim = here / "r" / "samples" / sorted(records)[-1]
    victim.write_bytes(damage(victim.read_bytes()))
    code, _, err = _rbmm(capsys, *_eval(model, "--out", "r"))
    assert code == 0, err
    assert _records(here / "r") == records


def test_no_flipped_byte_of_a_record_is_taken_for_a_good_one(tmp_path):
    """Every single-bit flip in a record's zip entries is caught by the CRC or the field checks."""
    record = {name: np.zeros(7, dtype) for name, dtype in results.RECORD_FIELDS[results.Task.CLASSIFICATION].items()}
    record["ids"] = np.arange(7)
    good = results.npz_bytes(record)
    path = tmp_path / "r.npz"
    for damaged in _flip_each_data_byte(good):
        path.write_bytes(damaged)
        back = results._read_whole_record(path, results.Task.CLASSIFICATION)
        assert back is None or all(np.array_equal(back[k], record[k]) for k in record)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_report_gate_baseline_export_and_checkpoint_files_are_only_moved_into_place(here, capsys, monkeypatch):
    """No output file is ever opened in place: each appears by rename, after an fsync."""
    model = _script(Linear(), here / "m.pt")
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    renamed: set[Path] = set()
    real_replace = atomic.os.replace

    def recording_replace(src, dst):
        renamed.add(Path(dst).resolve())
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", recording_replace)
    commands = [["report", "r", "-o", "rep"], ["baseline", "r", "-o", "out/base.json"],
                ["gate", "r", "--baseline", "out/base.json", "--junit", "out/g.xml", "--summary", "out/g.md",
                 "--benchmark-json", "out/bench.json"],
                ["export", "r", "--format", "robustbench", "--other-protocol", "-o", "exp"],
                ["train", "--data", "feats.npz", "--fusion", "concat", "--epochs", "1", "--quiet", "--out", "out/m.pt"]]
    for argv in commands:
        code, _, err = _rbmm(capsys, *argv)
        assert code == 0, (argv, err)
    written = {p.resolve() for folder in ("rep", "out", "exp") for p in (here / folder).rglob("*") if p.is_file()}
    assert written and written <= renamed, sorted(map(str, written - renamed))


def test_a_full_disk_during_report_leaves_the_old_report_and_no_temporary_file(here, capsys, monkeypatch):
    model = _script(Linear(), here / "m.pt")
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    assert _rbmm(capsys, "report", "r", "-o", "rep")[0] == 0
    before = _files(here / "rep")

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    line = _one_line_error(*_rbmm(capsys, "report", "r", "-o", "rep")[::2])
    assert "disk full while writing" in line
    assert _files(here / "rep") == before


FORMULA = "=cmd|' C calc'!A0"


def _csv_cells(path: Path) -> list[str]:
    import csv

    return [cell for row in csv.reader(path.read_text().splitlines()) for cell in row]


def test_formula_cells_are_neutralised_in_every_csv_and_read_back_unchanged(here, capsys):
    model = _script(Linear(), here / f"{FORMULA}.pt")
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    assert _rbmm(capsys, "report", "r", "-o", "rep")[0] == 0
    assert _rbmm(capsys, "export", "r", "--format", "robustbench", "--other-protocol", "-o", "exp")[0] == 0
    written = [here / "r" / "cells.csv", *sorted((here / "rep" / "tables").glob("*.csv")), here / "exp" / "unaggregated_results.csv"]
    for path in written:
        cells = _csv_cells(path)
        assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r")], path
        assert not [c for c in cells if c.startswith("-") and not _is_number(c)], path
    assert f"'{FORMULA}" in _csv_cells(here / "r" / "cells.csv")
    from robustbench_mm.results import load_run

    run = load_run(here / "r")
    assert set(run.cells["model"]) == {FORMULA} and run.manifest.models[0].name == FORMULA


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_negative_numbers_stay_numbers_and_quotes_round_trip():
    from robustbench_mm.escape import csv_text, restore_csv_frame
    import io

    frame = pd.DataFrame({"name": ["-x", "'q", "plain", "@a", "\tt", "+1"], "value": [-0.5, -1.0, 2.0, 0.0, -3.0, 1.0]})
    text = csv_text(frame)
    assert "-0.5" in text.splitlines()[1] and text.splitlines()[1].startswith("'-x,")
    back = restore_csv_frame(pd.read_csv(io.StringIO(text)))
    assert back["name"].tolist() == frame["name"].tolist() and back["value"].tolist() == frame["value"].tolist()


HTML_NAME = "<img src=x onerror=alert(1)>"


def test_gate_summary_escapes_names_as_the_report_does(here, capsys):
    model = _script(Linear(), here / f"{HTML_NAME}.pt")
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    assert _rbmm(capsys, "baseline", "r", "-o", "base.json")[0] == 0
    assert _rbmm(capsys, "gate", "r", "--baseline", "base.json", "--summary", "g.md", "--all")[0] == 0
    summary = (here / "g.md").read_text()
    assert "<img" not in summary and "&lt;img src=x onerror=alert(1)&gt;" in summary


@pytest.mark.parametrize("fmt", ["robustbench", "lm-eval"])
@pytest.mark.parametrize("name", ["..", "ABSOLUTE"])
def test_export_writes_nothing_outside_its_folder(here, capsys, fmt, name):
    if name == "ABSOLUTE":
        name = str(here / "elsewhere" / "x")
    model = _script(Linear(), here / "m.pt")
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    cells = pd.read_csv(here / "r" / "cells.csv")
    cells["model"] = name
    cells.to_csv(here / "r" / "cells.csv", index=False)
    manifest = json.loads((here / "r" / "manifest.json").read_text())
    manifest["models"][0]["name"] = name
    (here / "r" / "manifest.json").write_text(json.dumps(manifest))
    (here / "lm" / "out").mkdir(parents=True)
    before = {p for p in here.rglob("*")}
    other = ["--other-protocol"] if fmt == "robustbench" else []  # the run's protocol is not ImageNet-C
    code, out, err = _rbmm(capsys, "export", "r", "--format", fmt, *other, "-o", "lm/out")
    assert code == 0, err
    added = {p for p in here.rglob("*")} - before
    inside = (here / "lm" / "out").resolve()
    assert added and all(p.resolve().is_relative_to(inside) for p in added), sorted(map(str, added))


def test_report_and_export_file_names_come_from_one_sanitising_function():
    from robustbench_mm.escape import safe_file_name

    assert [safe_file_name(n) for n in ["..", "/etc/passwd", ".hidden", "a/../b", "ok-1.2_x", "", "a\0b"]] == \
        ["_", "_etc_passwd", "hidden", "a_.._b", "ok-1.2_x", "_", "a_b"]


def test_a_killed_baseline_writers_temporary_file_does_not_stay_for_good(here, capsys):
    model = _script(Linear(), here / "m.pt")
    assert _rbmm(capsys, *_eval(model, "--out", "r"))[0] == 0
    left = here / f".base.json.tmp{_dead_pid()}"
    left.write_text('{"half": ')
    assert _rbmm(capsys, "baseline", "r", "-o", "base.json")[0] == 0
    assert not left.exists() and json.loads((here / "base.json").read_text())["cells"]
