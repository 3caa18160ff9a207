"""Reading fields from request bodies and query strings, with one clear error each."""

from __future__ import annotations

import json
from typing import Any

from homecloud.agent.routes import Request
from homecloud.agent.schemas import (
    PYTHON_JSON_TYPES,
    BodySpec,
    is_json_type,
    json_type_of,
    parse_body_spec,
)
from homecloud.errors import UserError


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(PYTHON_JSON_TYPES.get(k, k.__name__) for k in kinds)


def _object_body(body: Any) -> dict[str, Any]:
    body = body if body is not None else {}
    if not isinstance(body, dict):
        raise UserError("request body must be a JSON object")
    return body


def _wrong_type(key: str, expected: str, value: Any) -> UserError:
    return UserError(f"field {key!r} must be {expected}, not {json_type_of(value)}")


def check_body(spec: BodySpec | None, body: Any, what: str) -> None:
    """Refuse a body that does not fit the route's declared ``spec``: the same rules the
    OpenAPI description states (required fields, types, no other field)."""
    if spec is None:
        if body not in (None, {}):
            raise UserError(f"{what} takes no request body")
        return
    fields = {f.name: f for f in parse_body_spec(spec)}
    body = _object_body(body)
    for key in body:
        if key not in fields:
            raise UserError(f"unknown field {key[:64]!r} in the request body (allowed: "
                            f"{', '.join(sorted(fields))})")
    for field in fields.values():
        value = body.get(field.name)
        expected = " or ".join(field.kinds)
        if value is None:
            if field.required:
                raise UserError(f"field {field.name!r} is required ({expected})")
        elif not any(is_json_type(value, kind) for kind in field.kinds):
            raise _wrong_type(field.name, expected, value)


def body_field(request: Request, key: str, kind: type | tuple[type, ...], *,
               required: bool = True, default: Any = None) -> Any:
    """One field of a JSON object body, checked for presence and type."""
    body = _object_body(request.body)
    if key not in body or body[key] is None:
        if required:
            raise UserError(f"field {key!r} is required ({_type_name(kind)})")
        return default
    value = body[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _wrong_type(key, _type_name(kind), value)
    return value


def query_flag(request: Request, key: str) -> bool:
    return request.query.get(key, "").lower() in ("1", "true", "yes")


def query_int(request: Request, key: str, default: int) -> int:
    text = request.query.get(key)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"query parameter {key}={text!r} must be an integer") from None


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            pending.extend((child, depth + 1) for child in item)
    return deepest


def decode_body(raw: bytes, max_depth: int) -> Any:
    """A request body's JSON value (None for an empty body); one line of error if it is not
    JSON or nests deeper than ``max_depth`` (no route takes more than a few levels)."""
    if not raw.strip():
        return None
    too_deep = UserError(f"request body nests arrays or objects more than {max_depth} levels "
                         "deep")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"request body is not valid JSON: {exc}") from None
    if json_depth(body) > max_depth:
        raise too_deep
    return body
