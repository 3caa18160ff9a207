"""homecloud's nginx configuration, rendered from the routes. Pure: text from data.

One server answers plain HTTP with a redirect to HTTPS; the HTTPS default server holds the
path routes and a server per host name holds that host's routes. Every route but a public one
asks the auth endpoint first (auth_request); a refusal is answered by the auth endpoint too
(``/_hc/denied``), so the rules for 302/401/403/429 live in one place (decisions.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from homecloud.config import FrontdoorConfig
from homecloud.frontdoor import AUTH_SOCKET, OWN_PREFIX, RUN_DIR, SESSION_COOKIE
from homecloud.frontdoor.routing import Route

GENERATION = "@GENERATION@"  # replaced by a digest of the rest of the configuration


@dataclass(frozen=True)
class DoorFiles:
    certificate: Path
    key: Path
    user: str = "www-data"  # nginx's workers (Debian's own)
    ipv6: bool = True  # listen on [::] too


def _listen(port: int, files: DoorFiles, extra: str = "") -> str:
    lines = [f"        listen {port}{extra};"]
    if files.ipv6:
        lines.append(f"        listen [::]:{port}{extra};")
    return "\n".join(lines)


_OWN_LOCATIONS = f"""\
        location ^~ {OWN_PREFIX}auth/ {{
            internal;
            proxy_pass http://hc_auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header Host $host;
        }}
        location = {OWN_PREFIX}denied {{
            internal;
            proxy_pass http://hc_auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-HC-Deny $hc_deny;
            proxy_set_header X-HC-Retry-After $hc_retry_after;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header Host $host;
        }}
        location ^~ {OWN_PREFIX} {{
            client_max_body_size 16k;
            proxy_pass http://hc_auth;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header Host $host;
        }}
"""


def _route_block(route: Route) -> str:
    lines = []
    if not route.public:
        auth = f"{OWN_PREFIX}auth/" + (f"group/{route.group}" if route.group else "user")
        lines += [f"auth_request {auth};", f"error_page 401 403 = {OWN_PREFIX}denied;",
                  # The user's password and session stay at the door.
                  'proxy_set_header Authorization "";',
                  "proxy_set_header Cookie $hc_backend_cookie;",
                  "proxy_set_header X-Remote-User $hc_user;"]
    if route.address is None:
        lines.append(f'return 502 "instance {route.instance} has no address: is it on the '
                     'network?\\n";')
    else:
        address = f"[{route.address}]" if ":" in route.address else route.address
        lines += [f"proxy_pass http://{address}:{route.port};",
                  "proxy_http_version 1.1;",
                  "proxy_set_header Host $host;",
                  "proxy_set_header Upgrade $http_upgrade;",
                  "proxy_set_header Connection $hc_connection;",
                  "proxy_set_header X-Real-IP $remote_addr;",
                  "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                  "proxy_set_header X-Forwarded-Proto https;"]
    return "\n".join(f"            {line}" for line in lines)


def _locations(routes: Sequence[Route]) -> str:
    out = []
    for route in sorted(routes, key=lambda r: r.path):
        body = _route_block(route)
        # "/app" serves /app itself and what is under /app/, not /apple.
        matches = ["/"] if route.path == "/" else [f"= {route.path}", f"{route.path}/"]
        out += [f"        location {match} {{\n{body}\n        }}" for match in matches]
    if not any(route.path == "/" for route in routes):
        out.append('        location / {\n            return 404 "no route here\\n";\n'
                   "        }")
    return "\n".join(out)


def _https_server(config: FrontdoorConfig, files: DoorFiles, name: str,
                  routes: Sequence[Route]) -> str:
    default = " default_server" if name == "_" else ""
    return f"""\
    server {{
{_listen(config.https, files, " ssl" + default)}
        server_name {name};
        ssl_certificate {files.certificate};
        ssl_certificate_key {files.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:hc_tls:1m;
{_OWN_LOCATIONS}{_locations(routes)}
    }}
"""


def render(config: FrontdoorConfig, files: DoorFiles, routes: Sequence[Route]) -> str:
    https = "" if config.https == 443 else f":{config.https}"
    hosts: dict[str, list[Route]] = {}
    for route in routes:
        hosts.setdefault(route.host, []).append(route)
    servers = [_https_server(config, files, "_", hosts.pop("", []))]
    servers += [_https_server(config, files, host, hosts[host]) for host in sorted(hosts)]
    timeout = config.timeout
    return f"""\
# Rendered by homecloud from its state (hc route ...): edits here are overwritten.
daemon off;
user {files.user};
worker_processes 2;
pid {RUN_DIR}/nginx.pid;
error_log stderr warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    server_tokens off;
    default_type application/octet-stream;
    client_body_temp_path {RUN_DIR}/body;
    proxy_temp_path {RUN_DIR}/proxy;
    fastcgi_temp_path {RUN_DIR}/fastcgi;
    uwsgi_temp_path {RUN_DIR}/uwsgi;
    scgi_temp_path {RUN_DIR}/scgi;

    client_max_body_size {config.max_body};
    # Slow clients are cut off: a request head, each body read and each write get this long.
    client_header_timeout {timeout}s;
    client_body_timeout {timeout}s;
    send_timeout {timeout}s;
    keepalive_timeout {max(timeout, 30)}s;
    limit_conn_zone $binary_remote_addr zone=hc_per_client:4m;
    limit_conn hc_per_client {config.per_client};
    limit_conn_status 429;

    # What the auth endpoint said (auth_request keeps them across the refusal's redirect).
    auth_request_set $hc_user $upstream_http_x_hc_user;
    auth_request_set $hc_deny $upstream_http_x_hc_deny;
    auth_request_set $hc_retry_after $upstream_http_retry_after;
    map $http_upgrade $hc_connection {{
        default upgrade;
        "" "";
    }}
    # The request's cookies without homecloud's session.
    map $http_cookie $hc_backend_cookie {{
        default $http_cookie;
        "~^(?<hc_c1>.*?)(?:^|;\\s*){SESSION_COOKIE}=[^;]*;?\\s*(?<hc_c2>.*)$" "$hc_c1$hc_c2";
    }}
    upstream hc_auth {{
        server unix:{AUTH_SOCKET};
    }}

    server {{
{_listen(config.http, files, " default_server")}
        server_name _;
        location / {{
            return 301 https://$host{https}$request_uri;
        }}
        # Which configuration serves: homecloud waits for this after a reload.
        location = {OWN_PREFIX}generation {{
            allow 127.0.0.1;
            allow ::1;
            deny all;
            return 200 "{GENERATION}\n";
        }}
    }}

{"".join(servers)}}}
"""
