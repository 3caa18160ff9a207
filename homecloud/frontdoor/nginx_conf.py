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
from homecloud.frontdoor import (
    ADMIN_GROUP,
    API_PREFIX,
    API_SOCKET,
    AUTH_SOCKET,
    OWN_PREFIX,
    REMOTE_USER_HEADER,
    ROUTE_VARIABLE,
    RUN_DIR,
    SESSION_COOKIE,
    lambda_socket,
)
from homecloud.frontdoor import console_paths as consoles
from homecloud.frontdoor.decisions import BANNED, BANNED_MESSAGE
from homecloud.frontdoor.routing import Route

GENERATION = "@GENERATION@"  # replaced by a digest of the rest of the configuration
LOGIN_RATE = "2r/s"  # login requests per client address, after a burst of LOGIN_BURST
LOGIN_BURST = 20


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


_BANNED_ANSWER = BANNED_MESSAGE.format("$hc_retry_after").replace("\n", "\\n")
# A banned address's refusal is kept (X-Accel-Expires from the auth endpoint, the only
# answers kept) and given by nginx itself, so a flood from it costs no call to the endpoint.
_OWN_LOCATIONS = f"""\
        location ^~ {OWN_PREFIX}auth/ {{
            internal;
            proxy_cache hc_bans;
            proxy_cache_key $remote_addr;
            proxy_ignore_headers Cache-Control Expires;
            proxy_pass http://hc_auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header Host $host;
        }}
        location = {OWN_PREFIX}denied {{
            internal;
            default_type "text/plain; charset=utf-8";
            if ($hc_deny = {BANNED}) {{
                add_header Retry-After $hc_retry_after always;
                add_header Cache-Control no-store always;
                return 429 "{_BANNED_ANSWER}";
            }}
            proxy_pass http://hc_auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-HC-Deny $hc_deny;
            proxy_set_header X-HC-Retry-After $hc_retry_after;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header Host $host;
        }}
        # The login form, first wall against password guessing: a few tries a second per
        # address, the rest answered 429 here.
        location = {OWN_PREFIX}login {{
            limit_req zone=hc_logins burst={LOGIN_BURST} nodelay;
            limit_req_status 429;
            client_max_body_size 16k;
            proxy_pass http://hc_auth;
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


# homecloud's own services behind the door, each in its own block (the agent's API for
# admins; browser consoles). Empty until the service exists.
_API_LOCATIONS = f"""\
        # The agent's API for admins (remote `hc --host`): the auth endpoint names the admin,
        # the agent's door socket trusts that name (agent/server.py). Streams (progress,
        # `hc logs -f`) pass unbuffered and may stay open for long.
        location ^~ {API_PREFIX} {{
            auth_request {OWN_PREFIX}auth/group/{ADMIN_GROUP};
            error_page 401 403 = {OWN_PREFIX}denied;
            proxy_pass http://unix:{API_SOCKET}:/;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_read_timeout 1d;
            proxy_set_header Host hcd;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_set_header Cookie "";
            proxy_set_header {REMOTE_USER_HEADER} $hc_user;
            # Snapshot streams (hc snapshot send): a body of any size, passed on as it comes
            # (the agent checks its digest); admins only, as above.
            location ~ ^{API_PREFIX}v1/replicas/[^/]+/receive$ {{
                client_max_body_size 0;
                client_body_buffer_size 1m;
                proxy_request_buffering off;
                proxy_http_version 1.1;
                rewrite ^{API_PREFIX.rstrip("/")}(/.*)$ $1 break;
                proxy_pass http://unix:{API_SOCKET}:;
            }}
        }}
"""
# Browser consoles (homecloud/consoles): the page for logged-in users (a login that was
# missing comes back here with the token, which only the page's fragment holds), its static
# files, and the websocket to hc-console's socket, kept open as long as the console is.
# Browsers run module scripts (noVNC) only when served as JavaScript.
_CONSOLE_TYPES = """
            types {
                text/javascript js mjs;
                text/css css;
                text/html html;
                image/svg+xml svg;
                image/png png;
                application/json json;
            }"""
_CONSOLE_LOCATIONS = f"""\
        location ^~ {consoles.PAGE_PREFIX} {{
            auth_request {OWN_PREFIX}auth/user;
            error_page 401 = @hc_console_login;
            error_page 403 = {OWN_PREFIX}denied;
            root {consoles.PAGE_DIR};
            rewrite ^ /console.html break;
            default_type text/html;
            add_header Cache-Control no-store;
        }}
        location @hc_console_login {{
            default_type text/html;
            return 401 '{consoles.LOGIN_REDIRECT}';
        }}
        location ^~ {consoles.PAGE_ASSETS_PREFIX} {{
            alias {consoles.PAGE_DIR}/;{_CONSOLE_TYPES}
        }}
        location ^~ {consoles.NOVNC_PREFIX} {{
            alias {consoles.NOVNC_DIR}/;{_CONSOLE_TYPES}
        }}
        location ^~ {consoles.XTERM_PREFIX} {{
            alias {consoles.XTERM_DIR}/;{_CONSOLE_TYPES}
        }}
        location ^~ {consoles.SOCKET_PREFIX} {{
            auth_request {OWN_PREFIX}auth/user;
            error_page 401 403 = {OWN_PREFIX}denied;
            proxy_pass http://unix:{consoles.PROXY_SOCKET}:;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_read_timeout 1d;
            proxy_send_timeout 1d;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $hc_connection;
            proxy_set_header Authorization "";
            proxy_set_header Cookie "";
            proxy_set_header X-Remote-User $hc_user;
            proxy_set_header X-Real-IP $remote_addr;
        }}
"""


# Where nginx's own 502 for a lambda (nothing listens on its socket: it is stopped) goes.
_LAMBDA_DOWN = "@hc_lambda_down"
_LAMBDA_DOWN_LOCATION = f"""\
        location {_LAMBDA_DOWN} {{
            default_type text/plain;
            return 503
                "lambda $hc_lambda is stopped: start it with `hc start $hc_lambda`\\n";
        }}"""


def _lambda_proxy(route: Route) -> list[str]:
    """To the lambda's own socket over SCGI (homecloud/lambdas/cgi.py), naming the route and
    the user (variables without HTTP_: a client cannot set them). The lambda bounds each
    request's time itself; its own 502s pass through."""
    lines = [f"set $hc_lambda {route.lambda_name};",
             f"error_page 502 = {_LAMBDA_DOWN};",
             f"scgi_pass unix:{lambda_socket(str(route.lambda_name))};",
             "scgi_param REQUEST_METHOD $request_method;",
             "scgi_param REQUEST_URI $request_uri;",
             "scgi_param REMOTE_ADDR $remote_addr;",
             f'scgi_param {ROUTE_VARIABLE} "{route.path}";',
             "scgi_read_timeout 3700s;",
             "scgi_request_buffering on;"]
    if not route.public:  # the user's password and session stay at the door
        lines += ["scgi_param REMOTE_USER $hc_user if_not_empty;",
                  'scgi_param HTTP_AUTHORIZATION "" if_not_empty;',
                  "scgi_param HTTP_COOKIE $hc_backend_cookie if_not_empty;"]
    return lines


def _route_block(route: Route) -> str:
    lines = []
    if not route.public:
        auth = f"{OWN_PREFIX}auth/" + (f"group/{route.group}" if route.group else "user")
        lines += [f"auth_request {auth};", f"error_page 401 403 = {OWN_PREFIX}denied;",
                  # The user's password and session stay at the door.
                  'proxy_set_header Authorization "";',
                  "proxy_set_header Cookie $hc_backend_cookie;",
                  "proxy_set_header X-Remote-User $hc_user;"]
    if route.lambda_name is not None:
        lines += _lambda_proxy(route)
    elif route.address is None:
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
    if any(route.lambda_name is not None for route in routes):
        out.append(_LAMBDA_DOWN_LOCATION)
    if not any(route.path == "/" for route in routes):
        out.append('        location / {\n            return 404 "no route here\\n";\n'
                   "        }")
    return "\n".join(out)


# TLS 1.3 suites in our order: OpenSSL's own puts AES-256-GCM first, which costs a third more
# CPU per byte than AES-128-GCM (snapshot streams cross the door at hundreds of MiB/s) for no
# gain a home cloud needs; a client that prefers ChaCha20 (no AES instructions) keeps it.
_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
_TLS13_SUITES = f"""\
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites {":".join(_SUITES)};
        ssl_conf_command Options PrioritizeChaCha;
"""


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
{_TLS13_SUITES}{_OWN_LOCATIONS}{_API_LOCATIONS}{_CONSOLE_LOCATIONS}{_locations(routes)}
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
    limit_req_zone $binary_remote_addr zone=hc_logins:4m rate={LOGIN_RATE};
    proxy_cache_path {RUN_DIR}/bans levels=1 keys_zone=hc_bans:4m max_size=64m inactive=1m
                     use_temp_path=off;

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
        # First, or after another (what follows keeps its own "; "); regexes match in order.
        "~^{SESSION_COOKIE}=[^;]*;?\\s*(?<hc_c2>.*)$" "$hc_c2";
        "~^(?<hc_c1>.*?);\\s*{SESSION_COOKIE}=[^;]*(?<hc_c2>(?:;.*)?)$" "$hc_c1$hc_c2";
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
