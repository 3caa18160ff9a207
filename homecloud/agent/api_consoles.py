"""API route for browser consoles: a single-use link to an instance's screen or terminal."""

from __future__ import annotations

import socket
import time
from urllib.parse import quote

from homecloud.agent.app import Agent
from homecloud.agent.fields import body_field
from homecloud.agent.routes import Request, Response, Route
from homecloud.agent.schemas import INSTANCE_NAME, object_schema
from homecloud.consoles import PAGE_PREFIX, TOKEN_SECONDS
from homecloud.consoles.targets import console_target
from homecloud.consoles.tokens import ConsoleTokens
from homecloud.errors import UserError

LINK = object_schema({"url": "string", "path": "string", "kind": "string", "user": "string",
                      "expires": "number"})
TARGET = object_schema({"kind": "string", "socket": "string?", "argv": "array",
                        "note": "string"})


def console_routes(agent: Agent) -> list[Route]:
    def new_link(request: Request) -> Response:
        name = body_field(request, "instance", str)
        user = body_field(request, "user", str)
        if agent.frontdoor.records.password_hash(user) is None:
            raise UserError(f"no front-door user {user!r}: give --user NAME (see `hc user ls`), "
                            "or add one with `hc user add NAME`")
        target = console_target(agent.instances, name)
        now = time.time()
        token = ConsoleTokens(agent.store).mint(name, user, target, now)
        path = f"{PAGE_PREFIX}{quote(name, safe='')}#{token}"
        https = agent.config.frontdoor.https
        host = agent.config.network.host_name or socket.getfqdn()
        url = f"https://{host}{'' if https == 443 else f':{https}'}{path}"
        return Response({"url": url, "path": path, "kind": target.kind, "user": user,
                         "expires": now + TOKEN_SECONDS}, status=201)

    def wake(request: Request) -> Response:
        name = request.params["name"]
        with agent.busy_instances.hold(name, "a console's wake"):
            target = console_target(agent.instances, name, wake=True)
        return Response({"kind": target.kind, "socket": target.socket,
                         "argv": list(target.argv), "note": target.note})

    return [
        Route("POST", "/v1/consoles", new_link,
              "A single-use link (valid 60 s, for one front-door user) to an instance's screen "
              "or terminal in the browser; a sleeping (--idle) instance wakes when the page opens",
              body={"instance": "string", "user": "string"}, response=LINK),
        Route("POST", "/v1/consoles/{name}/wake", wake,
              "Start a sleeping (--idle) instance whose console page opened, and say what its "
              "console reaches (the console proxy asks this)",
              response=TARGET, params={"name": INSTANCE_NAME}),
    ]
