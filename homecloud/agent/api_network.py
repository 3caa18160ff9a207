"""API routes for the network: `hc network ls`, `hc dns ls`, `hc doctor`."""

from __future__ import annotations

from dataclasses import asdict

from homecloud.agent.app import Agent
from homecloud.agent.routes import Request, Response, Route
from homecloud.agent.schemas import array_of, dataclass_schema, object_schema
from homecloud.host.checks import Check


def network_routes(agent: Agent) -> list[Route]:
    def network(_: Request) -> Response:
        return Response(agent.network.describe())

    def dns_records(_: Request) -> Response:
        agent.network.plan  # noqa: B018 - without a network there is no zone: say why
        return Response(agent.network.dns_records())

    def doctor(_: Request) -> Response:
        from homecloud.host.doctor import in_agent

        checks = in_agent(agent)
        return Response({"ok": all(c.status != "fail" for c in checks),
                         "checks": [asdict(c) for c in checks]})

    return [
        Route("GET", "/v1/network", network,
              "The instance network: bridge, subnets, gateways and each instance's addresses "
              "and published ports",
              response=object_schema({"bridge": "string", "error": "string?",
                                      "instances": "array"})),
        Route("GET", "/v1/dns", dns_records, "The DNS records homecloud serves",
              response=array_of(object_schema({"zone": "string", "name": "string",
                                               "type": "string", "ttl": "integer",
                                               "data": "string"}))),
        Route("GET", "/v1/doctor", doctor,
              "Check what homecloud needs from the host; each failure says how to fix it",
              response={"type": "object", "required": ["ok", "checks"],
                        "properties": {"ok": {"type": "boolean"},
                                       "checks": array_of(dataclass_schema(Check))}}),
    ]
