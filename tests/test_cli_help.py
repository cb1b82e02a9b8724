"""Every option of every `rbmm` subcommand says what it does and its default, and the valid choices
it names come from the registries (a protocol added to ./protocols/ shows up in the help)."""

import argparse

import pytest

from robustbench_mm.cli import DEVICES, build_parser
from robustbench_mm.datasets import describe_sources
from robustbench_mm.metrics import METRICS
from robustbench_mm.models import BACKBONES
from robustbench_mm.protocols import list_protocols


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _help(parser: argparse.ArgumentParser, dest: str) -> str:
    """The option's help text as `--help` prints it (registry fields filled), on one line."""
    action = next(a for a in parser._actions if a.dest == dest)
    return " ".join(parser._get_formatter()._expand_help(action).split())


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help_with_its_default(command):
    parser = _subcommands()[command]
    missing, no_default = [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = _help(parser, action.dest) if action.help not in (None, argparse.SUPPRESS) else ""
        if len(text) < 12:
            missing.append(action.dest)
        elif action.option_strings and "default" not in text and "required" not in text:
            no_default.append(action.dest)
    assert not missing, f"rbmm {command}: options without help: {missing}"
    assert not no_default, f"rbmm {command}: options whose help states no default: {no_default}"
    parser.format_help()  # every registry field resolves


def test_top_level_options_have_help():
    assert all(a.help for a in build_parser()._actions)


def test_choices_come_from_the_registries(tmp_path, monkeypatch):
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "my-own.toml").write_text('name = "my-own"\ndescription = "x"\n')
    monkeypatch.chdir(tmp_path)
    commands = _subcommands()
    protocols = _help(commands["eval"], "protocol")
    assert "my-own" in list_protocols() and all(name in protocols for name in list_protocols())
    assert all(name in _help(commands["train"], "fusion") for name in BACKBONES.names())
    assert all(name in _help(commands["eval"], "data") for name in describe_sources())
    assert all(name in _help(commands["compare"], "metric") for name in METRICS)
    for command in ("train", "eval"):
        assert all(device in _help(commands[command], "device") for device in DEVICES)


def test_units_are_stated_where_a_number_has_one():
    commands = _subcommands()
    assert "units of the score" in _help(commands["gate"], "tolerance")
    assert "fraction" in _help(commands["gate"], "confidence")
    assert "samples" in _help(commands["eval"], "batch_size")
    assert "probability" in _help(commands["train"], "modality_dropout")
