"""Reading fields from request bodies and query strings, with one clear error each."""

from __future__ import annotations

from typing import Any

from homecloud.agent.routes import Request
from homecloud.errors import UserError

_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array",
               dict: "object"}


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def body_field(request: Request, key: str, kind: type | tuple[type, ...], *,
               required: bool = True, default: Any = None) -> Any:
    """One field of a JSON object body, checked for presence and type."""
    body = request.body if request.body is not None else {}
    if not isinstance(body, dict):
        raise UserError("request body must be a JSON object")
    if key not in body or body[key] is None:
        if required:
            raise UserError(f"field {key!r} is required ({_type_name(kind)})")
        return default
    value = body[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise UserError(f"field {key!r} must be {_type_name(kind)}, not "
                        f"{_TYPE_NAMES.get(type(value), type(value).__name__)}")
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
