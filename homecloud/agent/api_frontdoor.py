"""API routes for the front door: `hc user ...` and `hc route ...`."""

from __future__ import annotations

from homecloud.agent.app import Agent
from homecloud.agent.fields import body_field
from homecloud.agent.routes import Request, Response, Route
from homecloud.agent.schemas import array_of, dataclass_schema, name_schema, object_schema
from homecloud.errors import UserError
from homecloud.frontdoor.accounts import UserInfo
from homecloud.frontdoor.service import FrontdoorService

USER_NAME = name_schema("[a-z_][a-z0-9_-]*")
ROUTE = object_schema({"name": "string", "host": "string", "path": "string",
                       "instance": "string", "port": "integer", "group": "string?",
                       "public": "boolean", "address": "string?",
                       "lambda_name": "string?", "target": "string"})


def frontdoor_routes(agent: Agent) -> list[Route]:
    def door() -> FrontdoorService:
        return agent.frontdoor

    def list_users(_: Request) -> Response:
        bans = [{"key": key, "until": until} for key, until in sorted(door().bans().items())]
        return Response({"users": door().users(), "bans": bans})

    def add_user(request: Request) -> Response:
        groups = body_field(request, "groups", list, required=False, default=[])
        if not all(isinstance(g, str) for g in groups):
            raise UserError("field 'groups' must be a list of strings")
        name = body_field(request, "name", str)
        door().add_user(name, body_field(request, "password", str), groups,
                      bool(body_field(request, "admin", bool, required=False, default=False)))
        return Response({"added": name}, status=201)

    def remove_user(request: Request) -> Response:
        door().remove_user(request.params["name"])
        return Response({"removed": request.params["name"]})

    def set_password(request: Request) -> Response:
        door().set_password(request.params["name"], body_field(request, "password", str))
        return Response({"changed": request.params["name"]})

    def new_token(request: Request) -> Response:
        return Response({"token": door().new_token(request.params["name"]),
                         "fingerprint": door().certificate_fingerprint()}, status=201)

    def list_routes(_: Request) -> Response:
        return Response(door().routes())

    def add_route(request: Request) -> Response:
        route = door().add_route(body_field(request, "match", str), body_field(request, "to", str),
                               body_field(request, "group", str, required=False),
                               bool(body_field(request, "public", bool, required=False,
                                               default=False)))
        return Response({"added": route.name, "address": route.address}, status=201)

    def remove_route(request: Request) -> Response:
        match = request.query.get("match")
        if not match:
            raise UserError("query parameter 'match' is required (the route's host or path)")
        door().remove_route(match)
        return Response({"removed": match})

    user = {"name": USER_NAME}
    return [
        Route("GET", "/v1/users", list_users, "Front-door users and current login bans",
              response={"type": "object", "required": ["users", "bans"],
                        "properties": {"users": array_of(dataclass_schema(UserInfo)),
                                       "bans": array_of(object_schema(
                                           {"key": "string", "until": "number"}))}}),
        Route("POST", "/v1/users", add_user, "Add a front-door user (Argon2id hash kept)",
              body={"name": "string", "password": "string", "groups": "array?",
                    "admin": "boolean?"}, response=object_schema({"added": "string"})),
        Route("DELETE", "/v1/users/{name}", remove_user,
              "Remove a user, their sessions and tokens",
              response=object_schema({"removed": "string"}), params=user),
        Route("PUT", "/v1/users/{name}/password", set_password,
              "Set a user's password (their browser sessions end)",
              body={"password": "string"}, response=object_schema({"changed": "string"}),
              params=user),
        Route("POST", "/v1/users/{name}/tokens", new_token,
              "A new bearer token for the user (shown once)",
              response=object_schema({"token": "string", "fingerprint": "string"}), params=user),
        Route("GET", "/v1/routes", list_routes, "Front-door routes", response=array_of(ROUTE)),
        Route("POST", "/v1/routes", add_route,
              "Route a host name or path to an instance's port (applied to nginx at once)",
              body={"match": "string", "to": "string", "group": "string?", "public": "boolean?"},
              response=object_schema({"added": "string", "address": "string?"})),
        Route("DELETE", "/v1/routes", remove_route, "Remove the route ?match=HOST_OR_PATH",
              response=object_schema({"removed": "string"})),
    ]
