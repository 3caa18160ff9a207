"""API routes for bare-metal machines and network boot: `hc machine ...`, `hc provision ...`."""

from __future__ import annotations

from homecloud.agent.app import Agent
from homecloud.agent.fields import body_field, query_int
from homecloud.agent.routes import Request, Response, Route
from homecloud.agent.schemas import INSTANCE_NAME, array_of, object_schema
from homecloud.errors import UserError
from homecloud.machines.spec import MachineSpec

MACHINE = object_schema({"name": "string", "mac": "string", "image": "string",
                         "disk": "string?", "diskless": "boolean", "ssh_keys": "array",
                         "workflow": "string", "state": "string", "current_step": "string?",
                         "steps": "array", "boots": "integer", "last_boot": "number?",
                         "address4": "string?", "fqdn": "string?"})
PROVISION = object_schema({"enabled": "boolean", "settings": "object?", "url": "string?",
                           "units": "object", "unknown_macs": "array", "ignored_macs": "array",
                           "installer_error": "string?"})


def machine_routes(agent: Agent) -> list[Route]:
    def add(request: Request) -> Response:
        keys = body_field(request, "ssh_keys", list, required=False, default=[])
        if not all(isinstance(k, str) for k in keys):
            raise UserError("field 'ssh_keys' must be a list of strings")
        spec = MachineSpec(
            name=body_field(request, "name", str), mac=body_field(request, "mac", str),
            image=body_field(request, "image", str),
            disk=body_field(request, "disk", str, required=False),
            diskless=bool(body_field(request, "diskless", bool, required=False)),
            ssh_keys=tuple(keys),
            workflow=body_field(request, "workflow", str, required=False, default=""))
        with agent.busy_instances.hold(spec.name, "a machine being added"):
            return Response(agent.machines.add(spec), status=201)

    def remove(request: Request) -> Response:
        name = request.params["name"]
        with agent.busy_instances.hold(name, "a removal"):
            agent.machines.remove(name)
        return Response({"removed": name})

    def log(request: Request) -> Response:
        limit = query_int(request, "lines", -1)
        return Response(agent.machines.log(request.params["name"], query_int(request, "after", 0),
                                    None if limit < 0 else limit))

    def enable(request: Request) -> Response:
        return Response(agent.machines.enable(body_field(request, "interface", str, required=False),
                                       body_field(request, "dhcp_range", str, required=False)))

    name = {"name": INSTANCE_NAME}
    return [
        Route("GET", "/v1/machines", lambda _: Response(agent.machines.all()),
              "Bare-metal machines: workflow state, current step, each step's state",
              response=array_of(MACHINE)),
        Route("POST", "/v1/machines", add,
              "Add a bare-metal machine: it installs its image when it boots from the network",
              body={"name": "string", "mac": "string", "image": "string", "disk": "string?",
                    "diskless": "boolean?", "ssh_keys": "array?", "workflow": "string?"},
              response=MACHINE),
        Route("GET", "/v1/machines/{name}",
              lambda r: Response(agent.machines.get(r.params["name"])),
              "Describe one machine", response=MACHINE, params=name),
        Route("DELETE", "/v1/machines/{name}", remove,
              "Remove a machine: its record, lease, DNS name and network boot entry",
              response=object_schema({"removed": "string"}), params=name),
        Route("POST", "/v1/machines/{name}/reinstall",
              lambda r: Response(agent.machines.reinstall(r.params["name"])),
              "Install the machine again at its next network boot", response=MACHINE,
              params=name),
        Route("GET", "/v1/machines/{name}/log", log,
              "The installer's log lines (?after=SEQ, ?lines=N: the last N)",
              response=array_of(object_schema({"seq": "integer", "time": "number",
                                                "step": "string", "line": "string"})),
              params=name),
        Route("GET", "/v1/provision", lambda _: Response(agent.machines.status()),
              "Network boot: settings, units, unknown MACs seen", response=PROVISION),
        Route("POST", "/v1/provision/enable", enable,
              "Serve network boot on an interface (proxyDHCP, or full DHCP with a range)",
              body={"interface": "string?", "dhcp_range": "string?"}, response=PROVISION),
        Route("POST", "/v1/provision/disable", lambda _: Response(agent.machines.disable()),
              "Stop serving network boot", response=PROVISION),
    ]
