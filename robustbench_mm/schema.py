"""Checking a JSON document against one of our JSON Schemas (robustbench_mm/schemas/), with the
first violation as a one-line error naming the field.

Only the keywords our schemas use are implemented (type, required, properties,
additionalProperties, items, enum, const, minItems, if/then; $schema, $id, title and description
are annotations); a schema using any other keyword is refused, so the schemas cannot outgrow this
check unnoticed. Why not the `jsonschema` package: it would add four packages (one compiled) to
every install for these few keywords. tests/test_schema_check.py checks that both agree.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from .errors import InputError

SCHEMAS = Path(__file__).parent / "schemas"
_ANNOTATIONS = {"$schema", "$id", "title", "description"}
_KEYWORDS = {"type", "required", "properties", "additionalProperties", "items", "enum", "const", "minItems", "if", "then"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    # JSON Schema: a number with a zero fractional part is an integer (1.0 is, NaN is not)
    "integer": lambda v: not isinstance(v, bool) and (isinstance(v, int) or isinstance(v, float) and v.is_integer()),
}


@cache
def load_schema(name: str) -> dict:
    """schemas/<name>.schema.json."""
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def _json_name(value: object) -> str:
    return next((t for t in ("null", "boolean", "integer", "number", "string", "array", "object") if _TYPES[t](value)), type(value).__name__)


def _equal(a: object, b: object) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def violation(doc: object, schema: dict, at: str = "") -> str | None:
    """The first place where `doc` breaks `schema`, as "field 'a.b[2]': expected ..., got ...";
    None when it conforms."""
    unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise ValueError(f"schema keyword(s) {sorted(unknown)} are not implemented by robustbench_mm.schema")
    where = f"field {at!r}" if at else "the document"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](doc) for t in types):
            return f"{where}: expected {' or '.join(types)}, got {_json_name(doc)}"
    if "const" in schema and not _equal(doc, schema["const"]):
        return f"{where}: expected {json.dumps(schema['const'])}, got {json.dumps(doc)[:60]}"
    if "enum" in schema and not any(_equal(doc, e) for e in schema["enum"]):
        return f"{where}: expected one of {', '.join(json.dumps(e) for e in schema['enum'])}, got {json.dumps(doc)[:60]}"
    if isinstance(doc, dict):
        required = list(schema.get("required", []))
        if "if" in schema and violation(doc, schema["if"], at) is None:
            required += schema.get("then", {}).get("required", [])
            found = violation(doc, {k: v for k, v in schema.get("then", {}).items() if k != "required"}, at)
            if found:
                return found
        missing = [k for k in required if k not in doc]
        if missing:
            return f"{where}: missing field {missing[0]!r}"
        properties = schema.get("properties", {})
        for key, value in doc.items():
            sub = properties.get(key, schema.get("additionalProperties", True))
            if sub is False:
                return f"{where}: unexpected field {key!r}"
            if isinstance(sub, dict):
                found = violation(value, sub, f"{at}.{key}" if at else key)
                if found:
                    return found
    if isinstance(doc, list):
        if len(doc) < schema.get("minItems", 0):
            return f"{where}: expected at least {schema['minItems']} item(s), got {len(doc)}"
        if "items" in schema:
            for i, value in enumerate(doc):
                found = violation(value, schema["items"], f"{at}[{i}]")
                if found:
                    return found
    return None


def check(doc: object, name: str, where: str) -> None:
    """InputError "<where>: <first violation> (schemas/<name>.schema.json)" unless `doc` conforms."""
    found = violation(doc, load_schema(name))
    if found:
        raise InputError(f"{where}: {found} (schema robustbench_mm/schemas/{name}.schema.json)")
