"""JSON Schema (draft 2020-12) of a config, made from the same declarations that validate it (``schema.py``).

Editors (the YAML language server of VS Code, JetBrains, Neovim, ...) read it to complete keys, show each key's
meaning and flag a typo or a value outside its choices while the config is typed; ``hpcfit schema --json JOB``
prints it. The JSON Schema says what the loader says about shapes, types, ranges, allowed values, defaults and
unknown keys (``additionalProperties: false`` wherever the loader refuses them); checks that need code (a
``Field.check``, a unit astropy must parse, an input file that must exist) are left to ``hpcfit validate``.

A value type outside this module (a job's own ``Type``) describes itself with a ``json_schema()`` method; a type
without one is left open (``{}``) with its ``describe()`` text as the description.
"""

from __future__ import annotations

import json
from typing import Any

from hpcfit.config.schema import (REQUIRED, Any_, Bool, Choice, Field, Float, Int, ListOf, MapOf, Null, OneOf, PathT,
                                  Record, Section, Str, Type)

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def document(section: Section, *, title: str, schema_id: str | None = None) -> dict[str, Any]:
    """A complete JSON Schema document for a config whose top level is ``section``."""
    body = section_schema(section, top=True)
    head: dict[str, Any] = {"$schema": DRAFT}
    if schema_id:
        head["$id"] = schema_id
    head["title"] = title
    return {**head, **body}


def section_schema(section: Section, *, top: bool = False) -> dict[str, Any]:
    """An object of declared keys; unknown keys are refused (as ``validate`` does). A section below the top may
    be left empty in YAML (``run:`` with nothing under it reads as null), which the loader takes as ``{}``."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in section.fields.items():
        if isinstance(spec, Section):
            properties[name] = section_schema(spec)
            if spec.required:
                required.append(name)
        else:
            properties[name] = field_schema(spec)
            if spec.default is REQUIRED:
                required.append(name)
    out: dict[str, Any] = {"type": "object" if top else ["object", "null"]}
    if section.doc:
        out["description"] = section.doc
    out["properties"] = properties
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out


def field_schema(spec: Field) -> dict[str, Any]:
    """One key: its value type, plus its meaning and default."""
    out = dict(type_schema(spec.type))
    if spec.doc:
        out["description"] = spec.doc
    if spec.default is not REQUIRED:
        out["default"] = _json_value(spec.default)
    return out


def type_schema(kind: Type) -> dict[str, Any]:
    """The JSON Schema of one value type (what its ``convert`` accepts)."""
    own = getattr(kind, "json_schema", None)
    if callable(own):
        return own()
    if isinstance(kind, Bool):
        return {"type": "boolean"}
    if isinstance(kind, Int):
        return _bounded({"type": "integer"}, kind.min, kind.max)
    if isinstance(kind, Float):
        out: dict[str, Any] = {"type": "number"}
        if kind.min is not None:
            out["exclusiveMinimum" if kind.min_exclusive else "minimum"] = kind.min
        if kind.max is not None:
            out["maximum"] = kind.max
        return out
    if isinstance(kind, Str):
        # "not empty" means not blank: at least one character that is not white space
        return {"type": "string", "pattern": r"\S"} if kind.nonempty else {"type": "string"}
    if isinstance(kind, PathT):
        return {"type": "string", "pattern": r"\S"}
    if isinstance(kind, Choice):
        values = [_json_value(v) for v in kind.values]
        if "none" in kind.values:  # YAML's null is read as the word "none" (see Choice.convert)
            values.append(None)
        return {"enum": values}
    if isinstance(kind, Null):
        return {"type": "null"}
    if isinstance(kind, Any_):
        return {}
    if isinstance(kind, ListOf):
        out = {"type": "array", "items": type_schema(kind.item)}
        if kind.min_len:
            out["minItems"] = kind.min_len
        if kind.max_len is not None:
            out["maxItems"] = kind.max_len
        if kind.scalar_ok:  # a single value stands for a list of one
            return {"anyOf": [out, _scalar_only(type_schema(kind.item))]}
        return out
    if isinstance(kind, MapOf):
        out = {"type": "object", "additionalProperties": type_schema(kind.value)}
        if kind.min_len:
            out["minProperties"] = kind.min_len
        return out
    if isinstance(kind, OneOf):
        return {"anyOf": [type_schema(t) for t in kind.types]}
    if isinstance(kind, Record):
        return record_schema(kind)
    return {"description": kind.describe()}


def record_schema(record: Record) -> dict[str, Any]:
    """A mapping of declared keys inside a list or a name map; a bare scalar may stand for its shorthand key."""
    properties = {name: field_schema(spec) for name, spec in record.fields.items()}
    required = [name for name, spec in record.fields.items() if spec.default is REQUIRED]
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    if record.shorthand is not None:
        short = record.fields[record.shorthand]
        return {"anyOf": [out, _scalar_only(type_schema(short.type))]}
    return out


def _scalar_only(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` restricted to what is neither a list nor a mapping (the shorthand forms take scalars only)."""
    return {"allOf": [schema, {"not": {"type": ["array", "object"]}}]}


def _bounded(out: dict[str, Any], low: Any, high: Any) -> dict[str, Any]:
    if low is not None:
        out["minimum"] = low
    if high is not None:
        out["maximum"] = high
    return out


def _json_value(value: Any) -> Any:
    """A default as JSON holds it (tuples become lists; anything JSON cannot hold becomes its text)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)
