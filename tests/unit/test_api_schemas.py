"""The API's JSON schemas: derived from dataclasses, declared bodies and the name rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from homecloud.agent.fields import check_body, decode_body, json_depth
from homecloud.agent.openapi import openapi_document
from homecloud.agent.routes import Response, Route, Router
from homecloud.agent.schemas import (
    IMAGE_NAME,
    INSTANCE_NAME,
    body_schema,
    dataclass_schema,
    object_schema,
)
from homecloud.errors import UserError
from homecloud.names import validate_instance_name, validate_name


@dataclass(frozen=True)
class Inner:
    flag: bool


@dataclass(frozen=True)
class Outer:
    name: str
    size: int
    ratio: float | None
    path: Path
    tags: list[str] = field(default_factory=list)
    inner: Inner | None = None
    extra: dict[str, int] = field(default_factory=dict)


def test_a_dataclass_schema_has_every_field_with_its_json_type() -> None:
    assert dataclass_schema(Outer) == {
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "size": {"type": "integer"},
            "ratio": {"type": ["number", "null"]}, "path": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "inner": {"anyOf": [{"type": "object", "properties": {"flag": {"type": "boolean"}},
                                 "required": ["flag"]}, {"type": "null"}]},
            "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "required": ["name", "size", "ratio", "path", "tags", "inner", "extra"],
    }


def test_a_type_without_a_json_form_is_an_error() -> None:
    @dataclass
    class Odd:
        when: complex

    with pytest.raises(TypeError, match="no JSON schema for <class 'complex'>"):
        dataclass_schema(Odd)


def test_body_and_answer_specs() -> None:
    assert body_schema({"a": "string", "b": "string|integer?"}) == {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": ["string", "integer"]}},
        "required": ["a"], "additionalProperties": False}
    assert object_schema({"a": "integer", "b": "string?"}) == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": ["string", "null"]}},
        "required": ["a", "b"]}


@pytest.mark.parametrize("name", ["web", "a", "x-1", "a1b2", "-web", "web-", "Web", "we_b",
                                  "a.b", "", "a b", "é"])
def test_name_patterns_agree_with_the_name_rules(name: str) -> None:
    for schema, validate in ((IMAGE_NAME, validate_name),
                             (INSTANCE_NAME, validate_instance_name)):
        try:
            validate(name)
            valid = True
        except UserError:
            valid = False
        described = (re.search(schema["pattern"], name) is not None
                     and schema["minLength"] <= len(name) <= schema["maxLength"])
        assert described == valid, (schema, name)


@pytest.mark.parametrize(("spec", "body", "message"), [
    ({"a": "string"}, {"a": "x", "b": 1}, "unknown field 'b' in the request body (allowed: a)"),
    ({"a": "string"}, {}, "field 'a' is required (string)"),
    ({"a": "string"}, {"a": None}, "field 'a' is required (string)"),
    ({"a": "number?"}, {"a": "1"}, "field 'a' must be number, not string"),
    ({"a": "string|integer?"}, {"a": []}, "field 'a' must be string or integer, not array"),
    ({"a": "string?"}, 3, "request body must be a JSON object"),
    (None, {"a": 1}, "POST /x takes no request body"),
    (None, [], "POST /x takes no request body"),
])
def test_bodies_that_do_not_fit_are_refused(spec: dict[str, str] | None, body: object,
                                            message: str) -> None:
    with pytest.raises(UserError) as error:
        check_body(spec, body, "POST /x")
    assert error.value.message == message


def test_bodies_that_fit() -> None:
    check_body({"a": "number?", "b": "integer"}, {"a": 1, "b": 2}, "POST /x")
    check_body({"a": "number?"}, None, "POST /x")
    check_body(None, {}, "POST /x")
    check_body(None, None, "POST /x")


def test_json_depth_and_decoding() -> None:
    assert [json_depth(v) for v in (1, [], {"a": [1, {"b": []}]})] == [0, 1, 4]
    assert decode_body(b"  ", 2) is None
    assert decode_body(b'{"a": [1]}', 2) == {"a": [1]}
    for raw in (b'{"a": [[1]]}', b"[" * 100_000):
        with pytest.raises(UserError, match="^request body nests arrays or objects more than 2 "
                                            "levels deep$"):
            decode_body(raw, 2)
    with pytest.raises(UserError, match="^request body is not valid JSON: "):
        decode_body(b"\xff", 2)


def test_openapi_describes_answers_patterns_and_streams() -> None:
    router = Router()
    answer = object_schema({"ok": "boolean"})
    router.add(Route("GET", "/things/{name}", lambda _: Response({}), "one", response=answer,
                     params={"name": INSTANCE_NAME}))
    router.add(Route("POST", "/things", lambda _: Response({}), "make", body={"a": "string?"},
                     streams=True, response=answer))
    paths = openapi_document(router, "1")["paths"]
    one = paths["/things/{name}"]["get"]
    assert one["parameters"] == [{"name": "name", "in": "path", "required": True,
                                  "schema": INSTANCE_NAME}]
    assert one["responses"]["200"]["content"]["application/json"]["schema"] == answer
    make = paths["/things"]["post"]
    assert make["requestBody"]["required"] is False
    line = make["responses"]["200"]["content"]["application/x-ndjson"]["schema"]
    assert line["oneOf"][1]["properties"]["result"] == answer
