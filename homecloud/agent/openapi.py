"""An OpenAPI 3.1 description generated from the route table."""

from __future__ import annotations

from typing import Any

from homecloud.agent.routes import Router

_ERROR = {"$ref": "#/components/schemas/Error"}


def _schema(spec: dict[str, str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for key, kind in spec.items():
        optional = kind.endswith("?")
        properties[key] = {"type": kind.rstrip("?")}
        if not optional:
            required.append(key)
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def openapi_document(router: Router, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in router.routes:
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in route.regex.groupindex]
        ok = ({"description": "NDJSON stream of {progress} lines ending with {result} or {error}",
               "content": {"application/x-ndjson": {"schema": {"type": "object"}}}}
              if route.streams else
              {"description": "OK", "content": {"application/json": {"schema": {}}}})
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
            "parameters": params,
            "responses": {
                "200": ok,
                "default": {"description": "error",
                            "content": {"application/json": {"schema": _ERROR}}},
            },
        }
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema(route.body)}},
            }
        paths.setdefault(route.pattern, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "homecloud agent API", "version": version,
                 "description": "HTTP+JSON on the UNIX socket /run/homecloud/hc.sock, for root "
                                "and the homecloud group."},
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "kind": {"type": "string"},
                           "exit_code": {"type": "integer"}},
            "required": ["error", "kind", "exit_code"]}}},
    }
