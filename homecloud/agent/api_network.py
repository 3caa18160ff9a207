"""API routes for the network: `hc network ls`, `hc dns ls`, `hc doctor`."""

from __future__ import annotations

from dataclasses import asdict

from homecloud.agent.app import Agent
from homecloud.agent.routes import Request, Response, Route


def network_routes(agent: Agent) -> list[Route]:
    def network(_: Request) -> Response:
        return Response(agent.network.describe())

    def dns_records(_: Request) -> Response:
        agent.network.plan  # noqa: B018 - without a network there is no zone: say why
        return Response(agent.network.dns_records())

    def doctor(_: Request) -> Response:
        from homecloud.agent.doctor import run_checks

        checks = run_checks(agent)
        return Response({"ok": all(c.status != "fail" for c in checks),
                         "checks": [asdict(c) for c in checks]})

    return [
        Route("GET", "/v1/network", network,
              "The instance network: bridge, subnets, gateways and each instance's addresses "
              "and published ports"),
        Route("GET", "/v1/dns", dns_records, "The DNS records homecloud serves"),
        Route("GET", "/v1/doctor", doctor,
              "Check what homecloud needs from the host; each failure says how to fix it"),
    ]
