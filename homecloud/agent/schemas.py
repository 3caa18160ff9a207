"""JSON schemas of the API's bodies, parameters and answers.

Request bodies are declared as a small mapping of field name to JSON type ("string",
"number?" for optional, "string|integer" for either); answers are derived from the dataclasses
the services return, so a field added to one of them shows in the description without being
written twice. Pure: used by the route table, the body check and the OpenAPI document.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import PurePath
from typing import Any

from homecloud.names import INSTANCE_NAME_PATTERN, MAX_NAME, NAME_PATTERN

JSON = Any
BodySpec = dict[str, str]

# A JSON value's type name, as JSON Schema spells it, for each Python type a body may hold.
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,), "null": (type(None),),
}
PYTHON_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number",
                                      bool: "boolean", list: "array", dict: "object",
                                      type(None): "null"}


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    name: str
    kinds: tuple[str, ...]  # JSON type names
    required: bool


def parse_body_spec(spec: BodySpec) -> list[FieldSpec]:
    return [FieldSpec(key, tuple(kind.rstrip("?").split("|")), not kind.endswith("?"))
            for key, kind in spec.items()]


def json_type_of(value: JSON) -> str:
    """The JSON type name of a decoded JSON value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"
    for name, kinds in JSON_TYPES.items():
        if isinstance(value, kinds):
            return name
    return type(value).__name__


def is_json_type(value: JSON, kind: str) -> bool:
    actual = json_type_of(value)
    return actual == kind or (kind == "number" and actual == "integer")


def _types(kinds: tuple[str, ...]) -> JSON:
    return kinds[0] if len(kinds) == 1 else list(kinds)


def body_schema(spec: BodySpec) -> dict[str, JSON]:
    """The JSON schema of a request body declared as ``spec``: no other field is allowed."""
    fields = parse_body_spec(spec)
    return {"type": "object",
            "properties": {f.name: {"type": _types(f.kinds)} for f in fields},
            "required": [f.name for f in fields if f.required],
            "additionalProperties": False}


def object_schema(spec: BodySpec) -> dict[str, JSON]:
    """An answer made of the fields in ``spec`` (same notation as request bodies); a later
    version may add fields, so clients must ignore those they do not know."""
    fields = parse_body_spec(spec)
    return {"type": "object",
            "properties": {f.name: {"type": _types(f.kinds + (() if f.required else ("null",)))}
                           for f in fields},
            "required": [f.name for f in fields]}


def array_of(items: dict[str, JSON]) -> dict[str, JSON]:
    return {"type": "array", "items": items}


def type_schema(hint: Any) -> dict[str, JSON]:
    """The JSON schema of what ``dataclasses.asdict`` makes of a value typed ``hint``."""
    if hint is Any:
        return {}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return dataclass_schema(hint)
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return {"type": "string"}
    if isinstance(hint, type) and hint in PYTHON_JSON_TYPES:
        return {"type": PYTHON_JSON_TYPES[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        options = [type_schema(arg) for arg in args]
        if all(set(option) == {"type"} and isinstance(option["type"], str)
               for option in options):
            return {"type": [option["type"] for option in options]}
        return {"anyOf": options}
    if origin in (list, tuple, set, frozenset):
        return array_of(type_schema(args[0]) if args else {})
    if origin is dict:
        return {"type": "object",
                "additionalProperties": type_schema(args[1]) if args else {}}
    if origin is typing.Literal:
        return {"enum": list(args)}
    raise TypeError(f"no JSON schema for {hint!r}")


def dataclass_schema(cls: type) -> dict[str, JSON]:
    """The JSON schema of ``dataclasses.asdict`` of an instance of ``cls``: every field is
    always present."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    return {"type": "object",
            "properties": {f.name: type_schema(hints[f.name]) for f in fields},
            "required": [f.name for f in fields]}


def name_schema(pattern: str) -> dict[str, JSON]:
    return {"type": "string", "pattern": f"^{pattern}$", "minLength": 1, "maxLength": MAX_NAME}


IMAGE_NAME = name_schema(NAME_PATTERN)
INSTANCE_NAME = name_schema(INSTANCE_NAME_PATTERN)
