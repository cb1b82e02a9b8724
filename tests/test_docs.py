"""The documentation as a whole: the site builds in strict mode (a broken link, anchor or include,
or a page left out of the nav, fails it), the generated catalogue matches the registry, every page
whose blocks can run is run by tests/test_readme.py, every `rbmm` option the pages name exists,
and the README stays a few screens long."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys

import pytest
from docpages import DOCS, ROOT, blocks, commands, fenced, page, page_names
from test_readme import FRESH_CHECKOUT, STANDALONE, TUTORIAL

from robustbench_mm.cli import build_parser


def test_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "catalogue.html").is_file()


def _build_docs():
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "tools" / "build_docs.py")
    build_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_docs)
    return build_docs


def test_corruption_catalogue_is_generated_from_the_registry():
    build_docs = _build_docs()
    text = build_docs.catalogue()
    assert (DOCS / "catalogue.md").read_text(encoding="utf-8") == text, "run python tools/build_docs.py"
    from robustbench_mm.corruptions import list_corruptions

    for corruption in (s for s in list_corruptions() if s.source == "builtin"):
        assert f"## `{corruption.name}`" in text


def test_every_built_in_corruption_has_its_gallery_picture_on_the_catalogue_page():
    """Each built-in corruption and each of ImageNet-C's kernels has a committed picture, small
    enough to commit, shown on the page; one is redrawn to prove the pictures are what
    `python tools/build_docs.py --gallery` makes (the script's output is the same bytes on every run)."""
    build_docs = _build_docs()
    from robustbench_mm.corruptions import list_corruptions

    names = [s.name for s in list_corruptions() if s.source == "builtin"]
    names += [f"imagenet-c/{name}" for name in ("fog", "frost", "glass_blur", "jpeg_compression", "pixelate")]
    assert set(names) <= set(build_docs.gallery_names())
    text = (DOCS / "catalogue.md").read_text(encoding="utf-8")
    pictures = sorted((DOCS / "gallery").rglob("*.png"))
    missing = [n for n in build_docs.gallery_names() if not (DOCS / "gallery" / f"{n}.png").is_file()]
    assert not missing, f"run python tools/build_docs.py --gallery: no picture for {missing}"
    unshown = [n for n in build_docs.gallery_names() if f"![{n} at each level](gallery/{n}.png)" not in text]
    assert not unshown, f"docs/catalogue.md does not show {unshown}"
    assert len(pictures) == len(build_docs.gallery_names()), "docs/gallery holds a picture of no corruption"
    assert max(p.stat().st_size for p in pictures) < 64_000 and sum(p.stat().st_size for p in pictures) < 1_500_000
    for name in ("pixelate", "imagenet-c/contrast"):  # a digit and the photograph: cheap kernels
        assert build_docs.gallery_png(name, {}) == (DOCS / "gallery" / f"{name}.png").read_bytes(), \
            f"docs/gallery/{name}.png is not what tools/build_docs.py --gallery draws; rerun it"


def test_every_page_with_blocks_to_run_is_run_by_a_test():
    """A page whose fenced blocks name a language is run by tests/test_readme.py, and every page
    that test names exists (a new page must be added there, in order if it continues the tutorial)."""
    names = page_names()
    run = TUTORIAL + STANDALONE + FRESH_CHECKOUT
    assert set(run) <= set(names)
    unrun = [name for name in names if blocks(page(name)) and name not in run]
    assert not unrun, f"pages with command blocks no test runs (add them to FRESH_CHECKOUT in tests/test_readme.py, or give them a test): {unrun}"


def _rbmm_commands(text: str) -> list[list[str]]:
    """Every `rbmm` command a page shows: in run blocks, in records (blocks without a language)
    and in inline code."""
    found: list[list[str]] = []
    for language, body in fenced(text):
        if language == "yaml":
            body = "\n".join(re.findall(r"^\s*- run: (.*)$", body, flags=re.M))
        if language in ("bash", "yaml", ""):
            found += [argv for argv in commands(body) if argv[0] == "rbmm"]
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.M | re.S)
    found += [shlex.split(span) for span in re.findall(r"`(rbmm [^`]+)`", prose)]
    return found


def test_pages_name_only_real_options():
    """Every `--flag` of an `rbmm` command in the README and the docs is an option of that subcommand
    (an upper-case word stands for any command, as in `rbmm COMMAND --help`)."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    top = {s for a in build_parser()._actions for s in a.option_strings}
    checked = 0
    for name in page_names():
        for argv in _rbmm_commands(page(name)):
            at = 1
            while at < len(argv) and argv[at].startswith("--"):  # options before the command (--plugins PATH)
                assert argv[at] in top, f"{name}: rbmm has no option {argv[at]} before a command"
                at += 2
            if at >= len(argv) or argv[at].isupper():
                continue
            assert argv[at] in sub.choices, f"{name}: rbmm has no command {argv[at]!r} ({shlex.join(argv)})"
            options = {s for a in sub.choices[argv[at]]._actions for s in a.option_strings} | top
            for arg in argv[at + 1:]:
                if arg.startswith("--"):
                    assert arg.split("=")[0] in options, f"{name}: rbmm {argv[at]} has no option {arg}"
            checked += 1
    assert checked > 50


def _script_commands(text: str) -> list[list[str]]:
    """Every `python tools/X.py ...` or `python benchmarks/X.py ...` a page shows (blocks or inline
    code), from the script's path on, `[optional]` brackets dropped."""
    lines: list[str] = []
    for language, body in fenced(text):
        if language in ("bash", ""):
            lines += [shlex.join(argv) for argv in commands(body)]
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.M | re.S).replace("\n", " ")
    lines += re.findall(r"`([^`]*python [^`]*)`", prose)
    found = []
    for line in lines:
        match = re.search(r"python ((?:tools|benchmarks)/\S+\.py)(.*)", line.replace("[", "").replace("]", ""))
        if match:
            found.append([match.group(1), *match.group(2).split()])
    return found


def test_pages_name_only_real_script_options():
    """The study and benchmark commands the pages record (too long to run here) name scripts that
    exist, and subcommands and `--options` their argument parsers declare."""
    checked = 0
    for name in page_names():
        for script, *args in _script_commands(page(name)):
            path = ROOT / script
            assert path.is_file(), f"{name}: no script {script}"
            source = path.read_text(encoding="utf-8")
            if args and not args[0].startswith("-") and "add_subparsers" in source:
                assert f'"{args[0]}"' in source, f"{name}: {script} has no subcommand {args[0]!r}"
            for arg in args:
                if arg.startswith("--"):
                    assert f'"{arg.split("=")[0]}"' in source, f"{name}: {script} has no option {arg}"
            checked += 1
    assert checked > 30


def test_readme_is_a_few_screens_linking_to_pages_that_exist():
    """The README is outside the site, so the strict build does not check its links: this does."""
    readme = page("README.md")
    assert len(readme.splitlines()) < 200
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", readme) if not t.startswith(("http://", "https://"))]
    assert targets and all((ROOT / t.split("#")[0]).is_file() for t in targets), targets
