"""API routes for instances: run, list, inspect, start, stop, restart, remove, exec, console,
logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from homecloud.agent.app import Agent
from homecloud.agent.fields import body_field, query_flag, query_int
from homecloud.agent.operations import ProgressReport, stream_operation
from homecloud.agent.routes import Request, Response, Route, StreamResponse
from homecloud.errors import UserError


def _stdio(request: Request) -> tuple[int, int, int] | None:
    if not request.fds:
        return None
    if len(request.fds) != 3:
        raise UserError("pass exactly three descriptors (stdin, stdout, stderr) or none")
    return (request.fds[0], request.fds[1], request.fds[2])


def spec_from_body(request: Request) -> Any:
    from homecloud.instances.spec import (
        Bind,
        InstanceSpec,
        parse_idle,
        parse_memory,
        parse_ports,
    )
    from homecloud.sizes import parse_size

    image = body_field(request, "image", str)
    name = body_field(request, "name", str, required=False) or _generated_name(image)
    memory = body_field(request, "memory", (str, int), required=False)
    cpus = body_field(request, "cpus", (int, float), required=False)
    env = body_field(request, "env", dict, required=False, default={})
    binds = body_field(request, "binds", list, required=False, default=[])
    command = body_field(request, "command", list, required=False)
    ports = body_field(request, "ports", list, required=False, default=[])
    network = body_field(request, "network", str, required=False, default="default")
    kind = body_field(request, "kind", str, required=False, default="container")
    disk = body_field(request, "disk", (str, int), required=False)
    ssh_keys = body_field(request, "ssh_keys", list, required=False, default=[])
    idle = body_field(request, "idle", (str, int, float), required=False)
    if not all(isinstance(v, str) for v in [*env.values(), *binds, *(command or []), *ports,
                                            *ssh_keys]):
        raise UserError("env values, binds, ports, ssh_keys and command must be strings")
    return InstanceSpec(
        name=name, image=image, kind=kind, cpus=float(cpus) if cpus is not None else None,
        memory=parse_memory(memory) if memory is not None else None,
        env={str(k): v for k, v in env.items()}, binds=[Bind.parse(b) for b in binds],
        command=command, restart=body_field(request, "restart", str, required=False,
                                            default="no"),
        ports=parse_ports(ports), network=network,
        machine=body_field(request, "machine", str, required=False),
        uefi=bool(body_field(request, "uefi", bool, required=False, default=False)),
        tpm=bool(body_field(request, "tpm", bool, required=False, default=False)),
        disk=parse_size(disk, "--disk") if disk is not None else None,
        cdrom=body_field(request, "cdrom", str, required=False),
        ssh_keys=tuple(ssh_keys),
        user_data=body_field(request, "user_data", str, required=False),
        idle=parse_idle(idle) if idle is not None else None)


def _generated_name(image: str) -> str:
    import re
    import secrets

    stem = re.sub(r"[^a-z0-9-]+", "-", image.lower()).strip("-")[:40] or "instance"
    return f"{stem}-{secrets.token_hex(3)}"


def instance_routes(agent: Agent) -> list[Route]:
    def manager() -> Any:
        return agent.instances

    def info_json(info: Any) -> dict[str, Any]:
        return asdict(info)

    def list_instances(request: Request) -> Response:
        detail = query_flag(request, "detail")
        return Response([info_json(i) for i in manager().list(detail=detail)])

    def get_instance(request: Request) -> Response:
        return Response(info_json(manager().get(request.params["name"])))

    def create_instance(request: Request) -> StreamResponse:
        spec = spec_from_body(request)
        attach = bool(body_field(request, "attach", bool, required=False, default=False))
        remove = bool(body_field(request, "remove", bool, required=False, default=False))
        stdio = _stdio(request)
        if remove and spec.idle is not None:
            raise UserError("--idle and --rm do not go together: --rm removes an instance "
                            "when its command ends; an idle one sleeps, to be woken again")
        manager().validate(spec)  # a bad -p, kind or no network: an error before any work

        def work(progress: ProgressReport) -> dict[str, Any]:
            with agent.busy_instances.hold(spec.name, "a creation"):
                info = manager().create(spec, progress=progress, stdio=stdio)
                agent.frontdoor.follow_instance(spec.name)
                if attach and spec.command:
                    info = manager().wait_finished(spec.name)
                    if remove:
                        manager().remove(spec.name, force=True)
                return info_json(info)

        return StreamResponse(stream_operation(work, f"run {spec.name}"))

    def lifecycle(action: str) -> Any:
        def handler(request: Request) -> Response:
            name = request.params["name"]
            timeout = body_field(request, "timeout", (int, float), required=False)
            with agent.busy_instances.hold(name, action):
                method = getattr(manager(), action)
                info = method(name) if action == "start" else method(name, timeout)
            return Response(info_json(info))

        handler.__name__ = f"{action}_instance"
        return handler

    def remove_instance(request: Request) -> Response:
        name = request.params["name"]
        with agent.busy_instances.hold(name, "a removal"):
            manager().remove(name, force=query_flag(request, "force"))
        agent.frontdoor.follow_instance(name)
        return Response({"removed": name})

    def exec_instance(request: Request) -> Response:
        from homecloud.instances.execute import exec_in_instance

        argv = body_field(request, "command", list)
        env = body_field(request, "env", dict, required=False, default={})
        status = exec_in_instance(manager(), request.params["name"], [str(a) for a in argv],
                                  stdio=_stdio(request),
                                  environment={str(k): str(v) for k, v in env.items()})
        return Response({"exit_status": status})

    def console(request: Request) -> Response:
        from homecloud.instances.execute import console_of_instance

        status = console_of_instance(manager(), request.params["name"], stdio=_stdio(request))
        return Response({"exit_status": status})

    def logs(request: Request) -> StreamResponse:
        argv = manager().log_command(request.params["name"],
                                     lines=query_int(request, "lines", 50),
                                     follow=query_flag(request, "follow"))
        return StreamResponse(_stream_lines(argv))

    from homecloud.agent.schemas import INSTANCE_NAME, array_of, dataclass_schema, object_schema
    from homecloud.instances.info import InstanceInfo

    info, name = dataclass_schema(InstanceInfo), {"name": INSTANCE_NAME}
    return [
        Route("GET", "/v1/instances", list_instances, "List instances with their state",
              response=array_of(info)),
        Route("POST", "/v1/instances", create_instance,
              "Create and start an instance (streams step progress; with attach and a "
              "command, waits for it and returns its exit status)",
              body={"image": "string", "name": "string?", "cpus": "number?",
                    "memory": "string|integer?", "env": "object?", "binds": "array?",
                    "command": "array?", "restart": "string?", "ports": "array?",
                    "network": "string?", "kind": "string?", "attach": "boolean?",
                    "remove": "boolean?", "machine": "string?", "uefi": "boolean?",
                    "tpm": "boolean?", "disk": "string|integer?", "cdrom": "string?",
                    "ssh_keys": "array?", "user_data": "string?",
                    "idle": "string|number?"},
              streams=True, response=info),
        Route("GET", "/v1/instances/{name}", get_instance, "Describe one instance",
              response=info, params=name),
        Route("POST", "/v1/instances/{name}/start", lifecycle("start"), "Start an instance",
              response=info, params=name),
        Route("POST", "/v1/instances/{name}/stop", lifecycle("stop"),
              "Stop an instance (clean poweroff, then kill after the timeout)",
              body={"timeout": "number?"}, response=info, params=name),
        Route("POST", "/v1/instances/{name}/restart", lifecycle("restart"),
              "Restart an instance", body={"timeout": "number?"}, response=info, params=name),
        Route("DELETE", "/v1/instances/{name}", remove_instance,
              "Remove an instance (?force=1 stops it first)",
              response=object_schema({"removed": "string"}), params=name),
        Route("POST", "/v1/instances/{name}/exec", exec_instance,
              "Run a command in a running instance; pass stdin/stdout/stderr descriptors "
              "with the request to attach", body={"command": "array", "env": "object?"},
              response=object_schema({"exit_status": "integer"}), params=name),
        Route("POST", "/v1/instances/{name}/console", console,
              "Attach the terminal passed with the request (stdin/stdout/stderr descriptors) "
              "to the instance's text console, until it detaches (Ctrl-])",
              response=object_schema({"exit_status": "integer"}), params=name),
        Route("GET", "/v1/instances/{name}/logs", logs,
              "The instance's journal (?lines=N, ?follow=1)", streams=True,
              response=object_schema({"exit_status": "integer?"}), params=name),
    ]


def _stream_lines(argv: list[str]) -> Iterator[dict[str, Any]]:
    from homecloud.tools import tool_lines

    for item in tool_lines(argv):
        if isinstance(item, int):
            yield {"result": {"exit_status": item}}
        else:
            yield {"progress": {"line": item}}
