"""The front door: homecloud's nginx on 80/443 of a dev host, its auth endpoint and `hc user` /
`hc route`, through real HTTP clients (http.client with TLS, certificate checks off for the
self-signed certificate) from this machine to the dev host's address. The module's own dev
host: its bans and configuration touch nobody else's tests."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from urllib.parse import urlencode

import pytest
from cli_checks import agent_config, ensure_busybox, hc_fails, wait_for

from homecloud.devhost import DevHost

pytestmark = pytest.mark.system

PAGE = "hello through the door"
PASSWORD = "correct horse battery"
TIMEOUT = 3  # the door's client timeout here (seconds), so slow clients are cut off quickly
BAN = 20  # seconds a ban lasts here
CONFIG = f"""
frontdoor:
  timeout: {TIMEOUT}
  ban: {BAN}
  max_body: 64K
  per_client: 400
"""


@dataclass(frozen=True)
class Door:
    host: DevHost
    address: str
    instance_address: str


def add_user(host: DevHost, name: str, *options: str, password: str = PASSWORD,
             check: bool = True) -> object:
    return host.run(*host.hc_argv(), "user", "add", name, *options, input=password + "\n",
                    check=check)


def request(door: Door, path: str, *, method: str = "GET", host: str | None = None,
            headers: dict[str, str] | None = None, body: bytes | None = None,
            port: int = 443) -> tuple[int, dict[str, str], str]:
    if port == 443:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            door.address, port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection(door.address, port, timeout=10)
    try:
        literal = f"[{door.address}]" if ":" in door.address else door.address
        conn.request(method, path, body=body,
                     headers={"Host": host or literal, **(headers or {})})
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read().decode(errors="replace"))
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="module")
def door(private_devhost: DevHost) -> Iterator[Door]:
    host = private_devhost
    if host.address is None:
        pytest.skip("this dev host shares the machine's network: the door's ports would be "
                    "the machine's")
    with agent_config(host, CONFIG):
        host.run("systemctl", "restart", "hc-frontdoor-auth.service")
        wait_for("the front door", lambda: host.run(
            "systemctl", "is-active", "hc-frontdoor.service", check=False).stdout.strip()
            == "active")
        image = ensure_busybox(host)
        # Path routes pass the whole path on: the page is under each of them too.
        script = (f"for d in /www /www/app /www/open /www/tmp-route /www/fresh; do mkdir -p $d && "
                  f"echo '{PAGE}' > $d/index.html; done && exec busybox httpd -f -p 80 -h /www")
        host.hc("run", "-d", "-q", image, "--name", "web", "--", "sh", "-c", script)
        info = host.hc("inspect", "web", json=True)
        add_user(host, "alice", "--group", "family")
        add_user(host, "bob")
        add_user(host, "root_admin", "--admin")
        host.hc("route", "add", "/app", "--to", "web:80")
        host.hc("route", "add", "family.example.home", "--to", "web:80", "--group", "family")
        host.hc("route", "add", "/open", "--to", "web:80", "--public")
        yield Door(host, host.address, info["ipv4"])
        host.hc("rm", "-f", "web", check=False)


def test_http_goes_to_https(door: Door) -> None:
    status, headers, _ = request(door, "/app/x?y=1", port=80, host="door.test")
    assert status == 301
    assert headers["location"] == "https://door.test/app/x?y=1"


def suite_chosen(door: Door, offered: str) -> str:
    """The TLS 1.3 suite the door picks for a client offering ``offered``, in its order."""
    result = subprocess.run(["openssl", "s_client", "-connect", f"{door.address}:443",
                             "-tls1_3", "-brief", "-ciphersuites", offered],
                            input="", capture_output=True, text=True, timeout=10)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Ciphersuite:")]
    assert lines, result.stderr
    return lines[0].split(":", 1)[1].strip()


def test_tls_prefers_aes_128_and_keeps_chacha_for_clients_that_want_it(door: Door) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((door.address, 443), timeout=10) as raw, \
            context.wrap_socket(raw) as tls:
        # Python's client offers OpenSSL's default order, AES-256-GCM first.
        assert tls.cipher()[0] == "TLS_AES_128_GCM_SHA256"
    aes256, aes128, chacha = ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256",
                              "TLS_CHACHA20_POLY1305_SHA256")
    assert suite_chosen(door, f"{aes256}:{aes128}") == aes128
    assert suite_chosen(door, f"{chacha}:{aes128}") == chacha  # a phone without AES
    assert suite_chosen(door, aes256) == aes256  # offered alone, still served


def test_routes_are_listed(door: Door) -> None:
    routes = {r["name"]: r for r in door.host.hc("route", "ls", json=True)}
    assert set(routes) == {"/app", "family.example.home", "/open"}
    assert routes["/app"]["address"] == door.instance_address
    assert routes["family.example.home"]["group"] == "family"
    assert routes["/open"]["public"] is True


def test_public_route_needs_no_login(door: Door) -> None:
    status, _, body = request(door, "/open/")
    assert (status, body.strip()) == (200, PAGE)


def test_no_login_browser_goes_to_the_login_page_and_scripts_get_401(door: Door) -> None:
    status, headers, _ = request(door, "/app/index.html?a=1", headers={"Accept": "text/html"})
    assert status == 302
    assert headers["location"] == "/_hc/login?next=/app/index.html%3Fa%3D1"
    status, headers, _ = request(door, "/app/")
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    status, _, page = request(door, "/_hc/login?next=/app/")
    assert status == 200 and 'name="password"' in page


def test_basic_auth_and_bearer_tokens(door: Door) -> None:
    status, _, body = request(door, "/app/", headers=basic("bob", PASSWORD))
    assert (status, body.strip()) == (200, PAGE)
    token = door.host.hc("user", "token", "bob").stdout.strip()
    status, _, body = request(door, "/app/", headers={"Authorization": f"Bearer {token}"})
    assert (status, body.strip()) == (200, PAGE)
    assert request(door, "/app/", headers={"Authorization": "Bearer forged"})[0] == 401
    assert request(door, "/nothing-here", headers=basic("bob", PASSWORD))[0] == 404


def login(door: Door, user: str, password: str, next_path: str = "/app/",
          host: str | None = None) -> tuple[int, dict[str, str], str]:
    form = urlencode({"user": user, "password": password, "next": next_path}).encode()
    return request(door, "/_hc/login", method="POST", body=form, host=host,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})


def test_login_form_gives_a_session_cookie(door: Door) -> None:
    status, headers, _ = login(door, "bob", PASSWORD, "/app/index.html")
    assert status == 303 and headers["location"] == "/app/index.html"
    cookie = headers["set-cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Max-Age="):
        assert attribute in cookie
    session = cookie.split(";")[0]
    status, _, body = request(door, "/app/", headers={"Cookie": session})
    assert (status, body.strip()) == (200, PAGE)
    # Another site is never where a login leads.
    assert login(door, "bob", PASSWORD, "//evil.example/")[1]["location"] == "/"


def test_missing_or_forged_session_cookie(door: Door) -> None:
    forged = {"Cookie": "hc_session=" + "A" * 43, "Accept": "text/html"}
    status, headers, _ = request(door, "/app/", headers=forged)
    assert status == 302 and headers["location"].startswith("/_hc/login")
    assert request(door, "/app/", headers={"Cookie": "hc_session="})[0] == 401


def test_group_routes(door: Door) -> None:
    family = "family.example.home"
    assert request(door, "/", host=family, headers=basic("bob", PASSWORD))[0] == 403
    for user in ("alice", "root_admin"):
        status, _, body = request(door, "/", host=family, headers=basic(user, PASSWORD))
        assert (status, body.strip()) == (200, PAGE), user


def test_body_over_the_limit_is_413(door: Door) -> None:
    status, _, _ = request(door, "/app/", method="POST", body=b"x" * (65 << 10),
                           headers=basic("bob", PASSWORD))
    assert status == 413


def test_clashing_route_is_refused_and_nothing_changes(door: Door) -> None:
    conf = door.host.run("cat", "/var/lib/homecloud/frontdoor/nginx.conf").stdout
    routes = door.host.hc("route", "ls", json=True)
    error = hc_fails(door.host, "route", "add", "/app/", "--to", "web:8080")
    assert error == "route /app exists (to web); remove it first with `hc route rm /app`"
    hc_fails(door.host, "route", "add", "/_hc/x", "--to", "web:80", message="belongs to")
    hc_fails(door.host, "route", "add", "/x", "--to", "nope:80", message="no instance 'nope'")
    assert door.host.hc("route", "ls", json=True) == routes
    assert door.host.run("cat", "/var/lib/homecloud/frontdoor/nginx.conf").stdout == conf


@pytest.mark.parametrize("name", ["Alice", "a:b", "-x", "", "x" * 33, "al ice"])
def test_invalid_user_names(door: Door, name: str) -> None:
    before = door.host.hc("user", "ls", json=True)
    result = add_user(door.host, name, check=False)
    assert result.returncode in (1, 2) and "hc" in result.stderr, result.stderr
    assert door.host.hc("user", "ls", json=True) == before


def test_route_rm(door: Door) -> None:
    door.host.hc("route", "add", "/tmp-route", "--to", "web:80", "--public")
    assert request(door, "/tmp-route/")[0] == 200
    door.host.hc("route", "rm", "/tmp-route")
    assert request(door, "/tmp-route/")[0] == 404
    hc_fails(door.host, "route", "rm", "/tmp-route", message="no route /tmp-route")


def test_a_configuration_nginx_refuses_is_never_installed(door: Door) -> None:
    """Certificate files that are not certificates: `nginx -t` fails, the route is not added,
    the running configuration stays and keeps serving."""
    host = door.host
    for name in ("bad.crt", "bad.key"):
        host.run("tee", f"/etc/homecloud/{name}", input="junk\n")
    conf = host.run("cat", "/var/lib/homecloud/frontdoor/nginx.conf").stdout
    routes = host.hc("route", "ls", json=True)
    with agent_config(host, CONFIG + "  certificate: /etc/homecloud/bad.crt\n"
                      "  key: /etc/homecloud/bad.key\n"):
        error = hc_fails(host, "route", "add", "/new", "--to", "web:80", code=3)
    assert error.startswith("the front door's new configuration fails `nginx -t`, so the "
                            "running one stays: cannot load certificate "
                            '"/etc/homecloud/bad.crt"'), error
    assert "\n" not in error
    assert host.hc("route", "ls", json=True) == routes
    assert host.run("cat", "/var/lib/homecloud/frontdoor/nginx.conf").stdout == conf
    assert request(door, "/open/")[0] == 200


def test_the_door_authenticates_while_the_agent_is_down(door: Door) -> None:
    door.host.run("systemctl", "stop", "hcd.socket", "hcd.service")
    try:
        status, _, body = request(door, "/app/", headers=basic("bob", PASSWORD))
        assert (status, body.strip()) == (200, PAGE)
    finally:
        door.host.run("systemctl", "start", "hcd.socket")


def test_the_agent_renders_the_routes_again_when_it_starts(door: Door) -> None:
    """After a reboot an instance may have another address than the running configuration
    names: the agent's start-up renders the routes again and reloads the door. Here the
    configuration is made stale by hand (its route leads to the door's own port 80) while the
    agent is down."""
    host = door.host
    conf = "/var/lib/homecloud/frontdoor/nginx.conf"
    host.run("systemctl", "stop", "hcd.socket", "hcd.service")
    try:
        host.run("sed", "-i", f"s#proxy_pass http://{door.instance_address}:80;#"
                 "proxy_pass http://127.0.0.2:80;#", conf)
        host.run("systemctl", "kill", "--kill-who=main", "-s", "HUP", "hc-frontdoor.service")
        wait_for("the stale configuration", lambda: request(door, "/open/")[0] == 301)
    finally:
        host.run("systemctl", "start", "hcd.socket")
    routes = {r["name"]: r for r in host.hc("route", "ls", json=True)}  # starts the agent
    assert routes["/open"]["address"] == door.instance_address
    status, _, body = request(door, "/open/")
    assert (status, body.strip()) == (200, PAGE)
    assert "127.0.0.2" not in host.run("cat", conf).stdout


def test_a_route_answers_through_https_as_soon_as_it_is_added(door: Door) -> None:
    """`hc route add` returns once no nginx worker with the old configuration takes new
    connections (on 443 too): a request right after it never meets 'no route here'."""
    answers = []
    for _ in range(20):
        door.host.hc("route", "add", "/fresh", "--to", "web:80", "--public")
        answers.append(request(door, "/fresh/")[:3:2])
        door.host.hc("route", "rm", "/fresh")
        answers.append(request(door, "/fresh/")[:3:2])
    assert answers == [(200, PAGE + "\n"), (404, "no route here\n")] * 20


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the door has closed ``sock`` (end of stream, perhaps after a 408)."""
    sock.settimeout(2)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def test_slow_clients_do_not_block_others(door: Door) -> None:
    """200 connections trickling a request head: others are served meanwhile, and the door
    closes the slow ones after its timeout."""
    slow = []
    for _ in range(200):
        sock = socket.create_connection((door.address, 80), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    try:
        started = time.monotonic()
        status, _, body = request(door, "/open/")
        assert (status, body.strip()) == (200, PAGE)
        assert time.monotonic() - started < 2
        time.sleep(TIMEOUT + 1)
        closed = sum(closed_by_peer(sock) for sock in slow)
        assert closed == len(slow)
    finally:
        for sock in slow:
            sock.close()


def test_wrong_passwords_ban_the_user_and_the_address(door: Door) -> None:
    """Last: it bans this machine's addresses for BAN seconds. Five wrong passwords for alice
    from two addresses ban her name, not the addresses; more from one address ban it."""
    if door.host.address6 is None:
        pytest.skip("the dev host has no IPv6 address: a second client address is needed")
    v6 = replace(door, address=door.host.address6)
    wrong = basic("alice", "wrong password")
    for client in (door, door, door, v6, v6):
        status, _, body = request(client, "/app/", headers=wrong)
        assert status == 401, body
    status, headers, body = request(v6, "/app/", headers=basic("alice", PASSWORD))
    assert status == 429 and 0 < int(headers["retry-after"]) <= BAN, body
    assert request(door, "/app/", headers=basic("bob", PASSWORD))[0] == 200
    status, _, page = login(v6, "alice", PASSWORD)
    assert status == 429 and "too many failed logins" in page
    listing = door.host.hc("user", "ls", json=True)
    assert {u["name"]: u["banned_until"] is not None for u in listing["users"]} == {
        "alice": True, "bob": False, "root_admin": False}
    assert "banned" in door.host.hc("user", "ls").stdout
    # The address: its earlier failures and these add up to five within the window.
    statuses = [request(door, "/app/", headers=basic("bob", "wrong"))[0] for _ in range(5)]
    assert 429 in statuses and set(statuses[:statuses.index(429)]) <= {401}, statuses
    assert request(door, "/app/", headers=basic("bob", PASSWORD))[0] == 429
    # nginx keeps the banned address's answer: it refuses the address without the auth
    # endpoint (stopped here), which others still need.
    host = door.host
    host.run("systemctl", "stop", "hc-frontdoor-auth.socket", "hc-frontdoor-auth.service")
    try:
        status, headers, body = request(door, "/app/", headers={"Authorization": "Bearer x"})
        assert (status, body) == (429, f"too many failed logins: try again in "
                                        f"{headers['retry-after']} s\n")
        assert 0 < int(headers["retry-after"]) <= BAN
        assert request(v6, "/app/", headers=basic("bob", PASSWORD))[0] == 500
    finally:
        host.run("systemctl", "start", "hc-frontdoor-auth.socket")
    assert request(door, "/open/")[0] == 200  # public routes ask nobody's name
    assert request(v6, "/app/", headers=basic("bob", PASSWORD))[0] == 200
    addresses = [b["key"] for b in door.host.hc("user", "ls", json=True)["bans"]
                 if b["key"].startswith("address:")]
    assert len(addresses) == 1 and ":" not in addresses[0].removeprefix("address:")
    log = door.host.run("journalctl", "-u", "hc-frontdoor-auth", "--no-pager").stdout
    assert "banned user:alice" in log and "banned address:" in log


def test_a_route_follows_its_instance_when_made_again(door: Door) -> None:
    host = door.host
    host.hc("rm", "-f", "web")
    assert request(door, "/open/")[0] == 502  # no instance: nginx was told so
    # Another instance takes web's old address, so the new web gets a different one.
    host.hc("run", "-d", "-q", "busybox", "--name", "web-squatter", "--", "sleep", "600")
    script = (f"mkdir -p /www/open && echo '{PAGE}' > /www/open/index.html && "
              "exec busybox httpd -f -p 80 -h /www")
    try:
        host.hc("run", "-d", "-q", "busybox", "--name", "web", "--", "sh", "-c", script)
        address = host.hc("inspect", "web", json=True)["ipv4"]
        assert address != door.instance_address
        routes = {r["name"]: r for r in host.hc("route", "ls", json=True)}
        assert routes["/open"]["address"] == address
        status, _, body = wait_for("the new web", lambda: (
            result if (result := request(door, "/open/"))[0] == 200 else None))
        assert body.strip() == PAGE
    finally:
        host.hc("rm", "-f", "web-squatter", check=False)
