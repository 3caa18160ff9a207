"""Each lambda's two units, rendered as unit files, named after it like every instance's:
hc-NAME.socket (listening while the lambda is ready, the front door proxies to it) and
hc-NAME.service (the sandbox the spawner and every
request's process run in, started by the socket, gone when idle). Pure."""

from __future__ import annotations

from dataclasses import dataclass

from homecloud.frontdoor import lambda_socket
from homecloud.lambdas import CODE_MOUNT
from homecloud.lambdas.spec import LambdaSpec

# Requests of one lambda running at once; more wait, then 503.
RUNNING = 32
# The spawner and its processes share the unit; on top of each process's --memory of data,
# the spawner's own buffers.
SPAWNER_MEMORY = 64 << 20
STOP_GRACE = 5.0  # seconds past a lambda's timeout that stopping it waits for its requests


def unit_base(name: str) -> str:
    return f"hc-{name}"


def service_unit(name: str) -> str:
    return f"{unit_base(name)}.service"


def socket_unit(name: str) -> str:
    return f"{unit_base(name)}.socket"


def log_identifier(name: str) -> str:
    """What the lines a lambda writes to stderr are tagged with in the journal."""
    return unit_base(name)


@dataclass(frozen=True)
class Runtime:
    """How the host runs spawners: its Python and the spawner's file."""

    python: str
    spawner: str
    max_body: int


def _quote(value: str) -> str:
    """One word of a unit file's command line or Environment= (systemd's quoting)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def render_socket(spec: LambdaSpec) -> str:
    return f"""\
# Written by homecloud (`hc lambda deploy {spec.name}`): do not edit.
[Unit]
Description=homecloud lambda {spec.name}'s socket

[Socket]
# Only root and nginx's workers (www-data) reach it. One spawner takes every connection
# (Accept=no), so neither MaxConnections= nor TriggerLimitBurst= limits a burst: it triggers
# once, and connections wait in the queue while the spawner starts.
ListenStream={lambda_socket(spec.name)}
SocketUser=root
SocketGroup=www-data
SocketMode=0660
DirectoryMode=0755
Backlog=1024
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""


def render_service(spec: LambdaSpec, code: str, runtime: Runtime) -> str:
    """The sandbox: ``code`` (its dataset on the host) read-only at /lambda, a dynamic user,
    a read-only system, a private /tmp, no network unless asked. Every process in it has at
    most --memory of data (LimitDATA=, inherited); all of them together at most MemoryMax=."""
    argv = [runtime.python, "-I", "-S", runtime.spawner, f"--name={spec.name}",
            f"--entry={CODE_MOUNT}/{spec.entry}", f"--timeout={spec.timeout:g}",
            f"--idle={spec.idle:g}", f"--max-body={runtime.max_body}", f"--running={RUNNING}"]
    env = "".join(f"Environment={_quote(f'{k}={v}')}\n" for k, v in sorted(spec.env.items()))
    return f"""\
# Written by homecloud (`hc lambda deploy {spec.name}`): do not edit.
[Unit]
Description=homecloud lambda {spec.name}
Requires={socket_unit(spec.name)}
After={socket_unit(spec.name)}
RequiresMountsFor={code}

[Service]
Type=exec
ExecStart={" ".join(_quote(a) for a in argv)}
SyslogIdentifier={log_identifier(spec.name)}
{env}DynamicUser=yes
ProtectSystem=strict
PrivateTmp=yes
NoNewPrivileges=yes
PrivateNetwork={"no" if spec.network else "yes"}
BindReadOnlyPaths={code}:{CODE_MOUNT}
WorkingDirectory={CODE_MOUNT}
LimitDATA={spec.memory}
MemoryMax={spec.memory * RUNNING + SPAWNER_MEMORY}
TasksMax={RUNNING * 16}
# SIGTERM: the spawner takes no new request and lets the running ones finish.
KillMode=mixed
TimeoutStopSec={spec.timeout + STOP_GRACE:g}
"""
