"""How the field's own tools read our files, re-implemented for the tests from their published
sources (cited per function). Nothing here is imported by the package."""

from __future__ import annotations

import re

import xmlschema

# The structure Jenkins xUnit requires of a JUnit report (github:jenkinsci/xunit-plugin,
# src/main/resources/org/jenkinsci/plugins/xunit/types/model/xsd/junit-10.xsd): testsuite with
# required name, tests, failures, errors; time of type SUREFIRE_TIME; testcase with a required
# name; failure/error/skipped with optional type and message. Written out here from the schema's
# published rules (the plug-in's file itself is not vendored).
JUNIT_10_XSD = r"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:simpleType name="SUREFIRE_TIME">
    <xs:restriction base="xs:string">
      <xs:pattern value="(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:complexType name="outcome" mixed="true">
    <xs:attribute name="type" type="xs:string"/>
    <xs:attribute name="message" type="xs:string"/>
  </xs:complexType>
  <xs:element name="failure" type="outcome"/>
  <xs:element name="error" type="outcome"/>
  <xs:element name="skipped" type="outcome"/>
  <xs:element name="system-out" type="xs:string"/>
  <xs:element name="system-err" type="xs:string"/>
  <xs:element name="testcase">
    <xs:complexType>
      <xs:choice minOccurs="0" maxOccurs="unbounded">
        <xs:element ref="skipped"/>
        <xs:element ref="error"/>
        <xs:element ref="failure"/>
        <xs:element ref="system-out"/>
        <xs:element ref="system-err"/>
      </xs:choice>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="time" type="xs:string"/>
      <xs:attribute name="classname" type="xs:string"/>
      <xs:attribute name="group" type="xs:string"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="testsuite">
    <xs:complexType>
      <xs:choice minOccurs="0" maxOccurs="unbounded">
        <xs:element ref="testcase"/>
        <xs:element ref="system-out"/>
        <xs:element ref="system-err"/>
      </xs:choice>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="tests" type="xs:string" use="required"/>
      <xs:attribute name="failures" type="xs:string" use="required"/>
      <xs:attribute name="errors" type="xs:string" use="required"/>
      <xs:attribute name="group" type="xs:string"/>
      <xs:attribute name="time" type="SUREFIRE_TIME"/>
      <xs:attribute name="skipped" type="xs:string"/>
      <xs:attribute name="timestamp" type="xs:string"/>
      <xs:attribute name="hostname" type="xs:string"/>
      <xs:attribute name="id" type="xs:string"/>
      <xs:attribute name="package" type="xs:string"/>
      <xs:attribute name="file" type="xs:string"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


def junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(JUNIT_10_XSD)


def _float_str(n: float) -> str:
    """github-action-benchmark src/write/markdownUtils.ts floatStr."""
    if float(n).is_integer():
        return f"{n:.0f}"
    return f"{n:.2f}" if n > 0.1 else repr(float(n))


def _value_str(bench: dict) -> str:
    """github-action-benchmark src/write/markdownUtils.ts strVal."""
    text = f"`{bench['value']}` {bench['unit']}"
    return text + (f" (`{bench['range']}`)" if bench.get("range") else "")


def benchmark_comment(name: str, current: list[dict], previous: list[dict], bigger_is_better: bool) -> str:
    """The Markdown table github-action-benchmark writes to a job summary and a PR/alert comment
    (src/write/buildComment.ts buildComment; leaveSummary.ts passes it to core.summary.addRaw)."""
    lines = [f"# {name}", "", "", "| Benchmark suite | Current: abc | Previous: def | Ratio |", "|-|-|-|-|"]
    before = {b["name"]: b for b in previous}
    for bench in current:
        prev = before.get(bench["name"])
        if prev is None:
            lines.append(f"| `{bench['name']}` | {_value_str(bench)} | | |")
            continue
        ratio = prev["value"] / bench["value"] if bigger_is_better else bench["value"] / prev["value"]
        lines.append(f"| `{bench['name']}` | {_value_str(bench)} | {_value_str(prev)} | `{_float_str(ratio)}` |")
    return "\n".join(lines)


def gfm_row_cells(row: str) -> list[str]:
    """The cells GitHub-flavoured Markdown reads from a table row: split at every '|' not escaped
    by a backslash, inline code included (GFM spec, section 4.10 Tables, example 200)."""
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip() for c in re.split(r"(?<!\\)\|", inner)]


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a Markdown text as rows of GFM cells (a table: consecutive lines starting with '|')."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("|"):
            current.append(gfm_row_cells(line))
        elif current:
            tables.append(current)
            current = []
    return tables
