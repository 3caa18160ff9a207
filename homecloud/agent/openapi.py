"""An OpenAPI 3.1 description generated from the route table."""

from __future__ import annotations

from typing import Any

from homecloud.agent.routes import Route, Router
from homecloud.agent.schemas import body_schema, parse_body_spec

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "kind": {"type": "string"},
                   "exit_code": {"type": "integer"}},
    "required": ["error", "kind", "exit_code"],
}


def stream_line_schema(result: dict[str, Any]) -> dict[str, Any]:
    """One line of an operation's NDJSON stream: progress, then a result or an error."""
    return {"oneOf": [
        {"type": "object", "properties": {"progress": {}}, "required": ["progress"],
         "additionalProperties": False},
        {"type": "object", "properties": {"result": result}, "required": ["result"],
         "additionalProperties": False},
        _ERROR,
    ]}


def _ok_response(route: Route) -> dict[str, Any]:
    result = route.response if route.response is not None else {}
    if route.streams:
        return {"description": "NDJSON stream, one JSON value a line (the schema is a line's): "
                               "{progress} lines ending with {result} or {error}",
                "content": {"application/x-ndjson": {"schema": stream_line_schema(result)}}}
    return {"description": "OK", "content": {"application/json": {"schema": result}}}


def _path_id(route: Route) -> str:
    """An operation's id from its method and path: get_v1_machines_name."""
    words = [part.strip("{}") for part in route.pattern.split("/") if part]
    return "_".join([route.method.lower(), *(word.replace("-", "_") for word in words)])


def operation_ids(router: Router) -> list[tuple[Route, str]]:
    """Each route with its operationId: the method and the handler's name, unique across the
    API; a route whose handler is unnamed or shares its name with another's is named by its
    path."""
    named = [f"{route.method.lower()}_{route.handler.__name__}" for route in router.routes]
    return [(route, name if "<" not in name and named.count(name) == 1 else _path_id(route))
            for route, name in zip(router.routes, named, strict=True)]


def _operation(route: Route, operation_id: str) -> dict[str, Any]:
    params = [{"name": p, "in": "path", "required": True,
               "schema": route.params.get(p, {"type": "string"})}
              for p in route.regex.groupindex]
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": operation_id,
        "parameters": params,
        "responses": {
            "200": _ok_response(route),
            "default": {"description": "error",
                        "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if route.body is not None:
        operation["requestBody"] = {
            "required": any(f.required for f in parse_body_spec(route.body)),
            "content": {"application/json": {"schema": body_schema(route.body)}},
        }
    return operation


def openapi_document(router: Router, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route, operation_id in operation_ids(router):
        paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route,
                                                                               operation_id)
    return {
        "openapi": "3.1.0",
        "info": {"title": "homecloud agent API", "version": version,
                 "description": "HTTP+JSON on the UNIX socket /run/homecloud/hc.sock, for root "
                                "and the homecloud group. Request bodies with fields not "
                                "described here are refused."},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR_SCHEMA}},
    }
