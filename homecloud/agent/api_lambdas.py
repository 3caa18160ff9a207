"""API routes for lambdas: `hc lambda deploy|ls|inspect|logs|rm`, views over the lambda
instances (drivers/lambda_.py) with the fields a lambda has."""

from __future__ import annotations

from typing import Any

from homecloud.agent.api_instances import _stream_lines
from homecloud.agent.app import Agent
from homecloud.agent.fields import body_field, query_flag, query_int
from homecloud.agent.routes import Request, Response, Route, StreamResponse
from homecloud.agent.schemas import array_of, name_schema, object_schema
from homecloud.errors import NotFound, UserError
from homecloud.instances.drivers.lambda_ import KIND, instance_spec, lambda_spec
from homecloud.instances.info import InstanceInfo
from homecloud.lambdas.code import serving_version
from homecloud.lambdas.spec import LambdaSpec, validate_lambda_name
from homecloud.lambdas.units import socket_unit

LAMBDA_NAME = name_schema("[a-z0-9]([a-z0-9-]*[a-z0-9])?")
LAMBDA = object_schema({"name": "string", "memory": "integer", "timeout": "number",
                        "env": "object", "network": "boolean", "route": "string?",
                        "public": "boolean", "group": "string?", "version": "integer",
                        "entry": "string", "source": "string", "deployed": "number",
                        "idle": "number", "unit": "string", "socket": "string",
                        "state": "string"})


def lambda_routes(agent: Agent) -> list[Route]:
    def view(info: InstanceInfo) -> dict[str, Any]:
        """A lambda as `hc lambda ls|inspect` show it: its instance's state, its options and
        the version of its code that serves."""
        instance = agent.instances.instance(info.name)
        return {"name": info.name, **lambda_spec(instance).options(),
                "version": serving_version(agent.instances.pool, info.name), "unit": info.unit,
                "socket": socket_unit(info.name), "state": info.state}

    def lambda_info(name: str) -> InstanceInfo:
        try:
            info = agent.instances.get(validate_lambda_name(name))
        except NotFound:
            info = None
        if info is None or info.kind != KIND:
            raise NotFound(f"no lambda {name!r} (see `hc lambda ls`)")
        return info

    def deploy(request: Request) -> Response:
        env = body_field(request, "env", dict, required=False, default={})
        if not all(isinstance(v, str) for v in env.values()):
            raise UserError("field 'env' must map names to strings")
        parsed = LambdaSpec.parse(
            body_field(request, "name", str),
            memory=body_field(request, "memory", (str, int), required=False),
            timeout=body_field(request, "timeout", (str, int, float), required=False),
            env=env, network=bool(body_field(request, "network", bool, required=False)),
            route=body_field(request, "route", str, required=False),
            public=bool(body_field(request, "public", bool, required=False)),
            group=body_field(request, "group", str, required=False),
            idle=body_field(request, "idle", (str, int, float), required=False))
        spec = instance_spec(LambdaSpec.from_options(parsed.name, {
            **parsed.options(), "source": body_field(request, "path", str)}))
        with agent.busy_instances.hold(spec.name, "a deployment"):
            if agent.instances.records.get(spec.name) is None:
                agent.instances.create(spec)
            else:
                agent.instances.update(spec)
        return Response(view(lambda_info(spec.name)), status=201)

    def list_lambdas(_: Request) -> Response:
        return Response([view(i) for i in agent.instances.list() if i.kind == KIND
                         and i.state not in ("creating", "removing")])

    def get_lambda(request: Request) -> Response:
        return Response(view(lambda_info(request.params["name"])))

    def remove(request: Request) -> Response:
        name = lambda_info(request.params["name"]).name
        with agent.busy_instances.hold(name, "a removal"):
            agent.instances.remove(name, force=True)  # its running requests finish first
        return Response({"removed": name})

    def logs(request: Request) -> StreamResponse:
        name = lambda_info(request.params["name"]).name
        argv = agent.instances.log_command(name, lines=query_int(request, "lines", 50),
                                   follow=query_flag(request, "follow"))
        return StreamResponse(_stream_lines(argv))

    name = {"name": LAMBDA_NAME}
    return [
        Route("GET", "/v1/lambdas", list_lambdas, "Deployed lambdas", response=array_of(LAMBDA)),
        Route("POST", "/v1/lambdas", deploy,
              "Deploy (or replace) a lambda from an executable or a folder on the host",
              body={"name": "string", "path": "string", "memory": "string|integer?",
                    "timeout": "string|number?", "env": "object?", "network": "boolean?",
                    "route": "string?", "public": "boolean?", "group": "string?",
                    "idle": "string|number?"},
              response=LAMBDA),
        Route("GET", "/v1/lambdas/{name}", get_lambda, "Describe one lambda", response=LAMBDA,
              params=name),
        Route("DELETE", "/v1/lambdas/{name}", remove,
              "Remove a lambda, its route and its code",
              response=object_schema({"removed": "string"}), params=name),
        Route("GET", "/v1/lambdas/{name}/logs", logs,
              "What the lambda's requests wrote to stderr (?lines=N, ?follow=1)", params=name,
              streams=True, response=object_schema({"exit_status": "integer?"})),
    ]
