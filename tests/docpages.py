"""Reading the documentation's pages (README.md and docs/*.md) as the site shows them: snippet
includes (`--8<-- "FILE:START:END"`, pymdownx.snippets as mkdocs.yml configures it) expanded,
fenced blocks found at any indentation. Shared by tests/test_readme.py and tests/test_docs.py."""

from __future__ import annotations

import os
import re
import shlex
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::(\d*))?(?::(\d*))?"$', flags=re.M)


def page_names() -> list[str]:
    """README.md and every Markdown page of the site, as `page()` takes them."""
    return ["README.md", *sorted(p.name for p in DOCS.glob("*.md"))]


def page(name: str) -> str:
    """The text of README.md or of docs/NAME with snippet includes expanded (paths from the root)."""
    path = ROOT / name if name == "README.md" else DOCS / name
    text = path.read_text(encoding="utf-8")

    def include(match: re.Match) -> str:
        lines = (ROOT / match.group(1)).read_text(encoding="utf-8").splitlines(keepends=True)
        start = int(match.group(2) or 1)
        end = int(match.group(3) or len(lines))
        return "".join(lines[start - 1:end]).rstrip("\n")

    return SNIPPET.sub(include, text)


def section(text: str, title: str) -> str:
    """The text after the heading that starts with `title` up to the next heading of its level or
    above (a `# PATH` line inside a code block is no heading)."""
    lines = text.splitlines(keepends=True)
    in_code, start, level = False, None, 0
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        heading = None if in_code else re.match(r"(#+) (.*)", line)
        if heading and start is None and heading.group(2).startswith(title):
            start, level = i + 1, len(heading.group(1))
        elif heading and start is not None and len(heading.group(1)) <= level:
            return "".join(lines[start:i])
    assert start is not None, f"no section {title!r}"
    return "".join(lines[start:])


def fenced(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block in order, '' for a block without a language; a block
    indented inside a list item is dedented."""
    out: list[tuple[str, str]] = []
    lines = text.splitlines(keepends=True)
    at = 0
    while at < len(lines):
        opening = re.fullmatch(r"([ \t]*)```(\w*)[ \t]*\n?", lines[at])
        if not opening:
            at += 1
            continue
        indent, language = opening.groups()
        close = next(i for i in range(at + 1, len(lines)) if lines[i].rstrip("\n") == f"{indent}```")
        out.append((language, textwrap.dedent("".join(lines[at + 1:close]))))
        at = close + 1
    return out


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block that names its language: the blocks that are run."""
    return [(language, body) for language, body in fenced(text) if language]


def commands(bash: str) -> list[list[str]]:
    """Each command of a bash block as argv: continuations joined, comments dropped, split at &&."""
    out: list[list[str]] = []
    for line in bash.replace("\\\n", " ").splitlines():
        tokens = shlex.split(os.path.expandvars(line), comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            out.append(tokens[:cut])
            tokens = tokens[cut + 1:]
    return [c for c in out if c]
