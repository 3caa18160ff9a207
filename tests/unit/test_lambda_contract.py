"""Lambdas, pure parts: names and limits, the CGI-style contract, each lambda's units, and
lambda routes in the front door's nginx configuration."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from homecloud.config import FrontdoorConfig
from homecloud.errors import UserError
from homecloud.frontdoor import ROUTE_VARIABLE as DOOR_ROUTE_VARIABLE
from homecloud.frontdoor.nginx_conf import DoorFiles, render
from homecloud.frontdoor.routing import Route, clash
from homecloud.lambdas.cgi import (
    ROUTE_VARIABLE,
    Request,
    Response,
    environment,
    parse_output,
    scgi_head,
    scgi_head_length,
    scgi_request,
)
from homecloud.lambdas.cgi import render as render_response
from homecloud.lambdas.spawner import parse_args
from homecloud.lambdas.spec import LambdaSpec, parse_duration
from homecloud.lambdas.units import (
    Runtime,
    render_service,
    render_socket,
    service_unit,
    socket_unit,
)


@pytest.mark.parametrize("name, message", [
    ("", "must not be empty"), ("Hello", "is invalid"), ("-x", "is invalid"),
    ("a_b", "is invalid"), ("a/b", "is invalid"), ("a" * 64, "too long"),
    ("x\n", "is invalid"),
])
def test_bad_lambda_names(name: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        LambdaSpec.parse(name)


@pytest.mark.parametrize("text, seconds", [("10", 10.0), ("10s", 10.0), ("500ms", 0.5),
                                           ("2m", 120.0), (3, 3.0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("kwargs, message", [
    ({"timeout": "forever"}, "--timeout 'forever' is invalid"),
    ({"timeout": "0s"}, "between 100ms"),
    ({"memory": "1M"}, "at least 16M"),
    ({"idle": "forever"}, "--idle .forever. is invalid"),
    ({"memory": "lots"}, "--memory"),
    ({"env": {"A-B": "1"}}, "--env 'A-B' is invalid"),
    ({"env": {"A": "x\ny"}}, "one line"),
    ({"public": True}, "for a lambda with a --route"),
    ({"route": "/x", "public": True, "group": "g"}, "either --public or for a --group"),
])
def test_bad_specs(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(UserError, match=message):
        LambdaSpec.parse("hello", **kwargs)


def test_request_environment() -> None:
    request = Request("POST", "/hello/a/b", "x=1&y=2",
                      [("Host", "door.test:443"), ("Content-Type", "text/plain"),
                       ("Content-Length", "5"), ("X-Thing", "1"), ("X-Thing", "2"),
                       ("Authorization", "Basic c2VjcmV0"), ("Proxy", "evil"),
                       ("X-HC-Lambda", "hello"), ("Bad Name", "x")],
                      5, route="/hello", user="alice", remote_addr="192.0.2.1")
    env = environment(request)
    assert env["REQUEST_METHOD"] == "POST" and env["QUERY_STRING"] == "x=1&y=2"
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/hello", "/a/b")
    assert env["CONTENT_LENGTH"] == "5" and env["CONTENT_TYPE"] == "text/plain"
    assert env["HTTP_X_THING"] == "1, 2" and env["SERVER_NAME"] == "door.test"
    assert env["REMOTE_USER"] == "alice" and env["REMOTE_ADDR"] == "192.0.2.1"
    # Credentials, homecloud's own headers and httpoxy never reach the lambda.
    assert not {"HTTP_AUTHORIZATION", "HTTP_PROXY", "HTTP_X_HC_LAMBDA"} & set(env)
    assert not any(" " in key for key in env)


def test_host_route_environment() -> None:
    env = environment(Request("GET", "/a", "", [], 0, route="/"))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/a")
    assert "CONTENT_LENGTH" not in env and "REMOTE_USER" not in env


def test_output_without_headers_is_plain_text() -> None:
    response = parse_output(b"hello\n")
    assert (response.status, response.body) == (200, b"hello\n")
    assert ("Content-Type", "text/plain; charset=utf-8") in response.headers
    assert parse_output(b"").body == b"" and parse_output(b"no header\n\nbody").status == 200


def test_output_with_cgi_headers() -> None:
    response = parse_output(b"Status: 404 Not Found\r\nContent-Type: application/json\r\n"
                            b"X-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n{}")
    assert (response.status, response.reason, response.body) == (404, "Not Found", b"{}")
    assert response.headers == [("Content-Type", "application/json"), ("X-A", "1")]
    response = parse_output(b"Location: /x\n\n")
    assert response.status == 200 and ("Location", "/x") in response.headers


def test_scgi_request() -> None:
    head = scgi_head([("CONTENT_LENGTH", "5"), ("REQUEST_METHOD", "POST"),
                 ("REQUEST_URI", "/hello/a?x=1"), ("REMOTE_ADDR", "192.0.2.1"),
                 ("HC_ROUTE", "/hello"), ("REMOTE_USER", "alice"),
                 ("HTTP_HOST", "door.test"), ("HTTP_CONTENT_TYPE", "text/plain"),
                 ("HTTP_X_THING", "1"), ("HTTP_X_THING", "2"),
                 # A client's own headers cannot pass for the door's variables.
                 ("HTTP_X_HC_ROUTE", "/evil"), ("HTTP_X_REMOTE_USER", "mallory")])
    assert scgi_head_length(head[:3]) is None  # its length still arriving
    assert scgi_head_length(head + b"body!") == len(head)
    request = scgi_request(head)
    assert (request.method, request.path, request.query, request.body_length) == \
        ("POST", "/hello/a", "x=1", 5)
    assert (request.route, request.user, request.remote_addr) == \
        ("/hello", "alice", "192.0.2.1")
    env = environment(request)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"], env["CONTENT_TYPE"]) == \
        ("/hello", "/a", "text/plain")
    assert env["HTTP_X_THING"] == "1, 2" and env["REMOTE_USER"] == "alice"
    assert not {"HTTP_X_HC_ROUTE", "HTTP_X_REMOTE_USER", "HC_ROUTE"} & set(env)
    assert ROUTE_VARIABLE == DOOR_ROUTE_VARIABLE  # the door names it as the spawner reads it


@pytest.mark.parametrize("head", [b"GET / HTTP/1.0\r\n\r\n", b":x,", b"123456789:",
                                  b"3:a\0b,", b"4:a\0b\0;", b"2:\0\0,"])
def test_bad_scgi_requests(head: bytes) -> None:
    with pytest.raises(ValueError):
        size = scgi_head_length(head)
        assert size is not None and size <= len(head)
        scgi_request(head[:size])


def test_rendered_response() -> None:
    text = render_response(Response(404, "Not Found", [("Content-Type", "text/plain")], b"no"))
    assert text == b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n" \
                   b"Content-Length: 2\r\n\r\nno"


RUNTIME = Runtime("/usr/bin/python3.11", "/opt/hc/homecloud/lambdas/spawner.py", 65536)


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith("#"):
            out.setdefault(key, []).append(value)
    return out


def test_service_unit_is_the_sandbox() -> None:
    spec = replace(LambdaSpec.parse("my-fn", memory="64M", timeout="3s", env={"K": 'V "%x"'},
                                    idle="500ms"), entry="run.sh")
    unit = _directives(render_service(spec, "/pool/lambdas/my-fn.2", RUNTIME))
    assert service_unit("my-fn") == "hc-my-fn.service"  # named after it, like any instance
    assert unit["ExecStart"] == ['"/usr/bin/python3.11" "-I" "-S" '
                                 '"/opt/hc/homecloud/lambdas/spawner.py" "--name=my-fn" '
                                 '"--entry=/lambda/run.sh" "--timeout=3" "--idle=0.5" '
                                 '"--max-body=65536" "--running=32"']
    for key in ("DynamicUser", "NoNewPrivileges", "PrivateTmp", "PrivateNetwork"):
        assert unit[key] == ["yes"], key
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["BindReadOnlyPaths"] == ["/pool/lambdas/my-fn.2:/lambda"]
    assert unit["LimitDATA"] == [str(64 << 20)]  # each process
    assert unit["MemoryMax"] == [str((64 << 20) * 32 + (64 << 20))]  # all of them together
    assert unit["Environment"] == ['"K=V \\"%%x\\""']
    assert unit["Requires"] == unit["After"] == ["hc-my-fn.socket"]
    assert unit["TimeoutStopSec"] == ["8"]
    networked = _directives(render_service(LambdaSpec.parse("n", network=True), "/c",
                                           RUNTIME))
    assert networked["PrivateNetwork"] == ["no"]


def test_socket_unit_listens_for_nginx_only() -> None:
    unit = _directives(render_socket(LambdaSpec.parse("my-fn")))
    assert socket_unit("my-fn") == "hc-my-fn.socket"
    assert unit["ListenStream"] == ["/run/hc-lambda/my-fn.sock"]
    assert unit["SocketGroup"] == ["www-data"] and unit["SocketMode"] == ["0660"]
    assert unit["WantedBy"] == ["sockets.target"]
    assert "Accept" not in unit  # one spawner per burst: no per-connection limits apply


def test_spawner_arguments() -> None:
    options = parse_args(["--name=x", "--entry=/lambda/a", "--timeout=1.5", "--max-body=10"])
    assert (options.name, options.entry, options.timeout, options.max_body, options.idle,
            options.socket, options.workers) == ("x", "/lambda/a", 1.5, 10, 2.0, None, 4)
    assert parse_args(["--name=x", "--entry=a", "--timeout=1", "--max-body=1",
                       "--workers=2"]).workers == 2
    with pytest.raises(SystemExit, match="expected --NAME=VALUE"):
        parse_args(["--name"])
    with pytest.raises(SystemExit, match="timeout"):
        parse_args(["--name=x", "--entry=a", "--timeout=soon", "--max-body=1"])


def test_lambda_routes_in_nginx_and_clashes() -> None:
    route = Route("", "/hello", "", 0, lambda_name="hello")
    text = render(FrontdoorConfig(), DoorFiles(Path("/c"), Path("/k"), ipv6=False), [route])
    block = text.split("location = /hello {", 1)[1].split("}", 1)[0]
    assert "scgi_pass unix:/run/hc-lambda/hello.sock;" in block
    assert "set $hc_lambda hello;" in block and "error_page 502 = @hc_lambda_down;" in block
    assert "location @hc_lambda_down {" in text  # nothing listens: it is stopped, 503
    assert 'scgi_param HC_ROUTE "/hello";' in block
    assert "scgi_param REMOTE_USER $hc_user if_not_empty;" in block
    public = render(FrontdoorConfig(), DoorFiles(Path("/c"), Path("/k"), ipv6=False),
                    [replace(route, public=True)])
    assert "REMOTE_USER" not in public.split("location = /hello {", 1)[1].split("}", 1)[0]
    assert "auth_request /_hc/auth/user;" in block
    assert route.target == "lambda hello"
    assert clash(Route("", "/hello", "web", 80), [route]) == route


def test_a_lambda_lives_in_its_instance_spec() -> None:
    spec = replace(LambdaSpec.parse("fn", memory="32M", route="/fn", env={"A": "b"}),
                   source="/srv/fn.sh", entry="fn.sh", deployed=5.0)
    assert LambdaSpec.from_options("fn", spec.options()) == spec
    assert "name" not in spec.options()
    with pytest.raises(UserError, match="lambda fn: its options are not a lambda's"):
        LambdaSpec.from_options("fn", {"image": "debian"})
