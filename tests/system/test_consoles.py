"""Consoles in the browser end to end, in the session's dev host: `hc console` asks the real
agent for a link, the front door (nginx, its login check) passes the websocket to hc-console
(started by its socket under systemd), and the console is a shell inside a real container.
Without a browser (a websocket client from this machine through the door) and with one
(Chromium through Playwright: log in, the xterm.js terminal, typing). A sleeping ``--idle``
container wakes when its console opens and an open console keeps it awake."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from browser import door_url, save_screenshot
from cli_checks import ensure_busybox, hc_fails, wait_for
from console_pages import add_door_user, console_link, open_console_page, terminal_text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from homecloud.devhost import DevHost
from tests.system.consoleproxy import read_until

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.system
pytest_plugins = ("browser",)
T = TypeVar("T")

USER = "console_user"
PASSWORD = "console password 1"
SHELL = "conshell"  # a busybox container: a shell, no boot
NO_SHELL = "connoshell"  # an image with nothing but /bin/busybox
SLEEPER = "consleeper"  # a booted Debian container with --idle
IDLE = 5


def run_async(job: Coroutine[Any, Any, T]) -> T:
    """Run ``job`` in a thread of its own: Playwright's sync API (the browser tests of this
    module) keeps an event loop running in the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, job).result()


def status(host: DevHost, unit: str) -> str:
    return str(host.run("systemctl", "is-active", unit, check=False).stdout.strip())


@pytest.fixture(scope="module")
def door(devhost: DevHost) -> Iterator[DevHost]:
    host = devhost
    door_url(host)  # skips when the dev host has no address of its own
    add_door_user(host, USER, PASSWORD)
    image = ensure_busybox(host)
    host.hc("run", "-d", "-q", image, "--name", SHELL, "--", "sleep", "100000")
    try:
        yield host
    finally:
        host.hc("user", "rm", USER, check=False)
        host.hc("rm", "-f", SHELL, check=False)


def link(host: DevHost, name: str) -> tuple[str, str]:
    """`hc console NAME`: the link's path and its token."""
    return console_link(host, name, USER)


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the door's certificate is self-signed, per host
    return context


def open_console(host: DevHost, name: str, token: str,
                 password: str = PASSWORD) -> connect:
    """A websocket to the console through the front door, logged in with HTTP basic auth."""
    basic = base64.b64encode(f"{USER}:{password}".encode()).decode()
    return connect(door_url(host, f"/_hc/console-ws/{name}?token={token}").replace(
        "https://", "wss://", 1), ssl=_tls(), additional_headers={
        "Authorization": f"Basic {basic}"}, open_timeout=30, max_size=None)


async def hello(ws: ClientConnection) -> dict[str, str]:
    """The proxy's first text frame(s): what the console is (after "starting", if woken)."""
    while True:
        message = json.loads(await ws.recv())
        if message["kind"] != "starting":
            return dict(message)


def test_a_shell_in_a_container_through_the_door(door: DevHost) -> None:
    # Socket-activated: stopped, it starts again on the next console.
    door.run("systemctl", "stop", "hc-console.service")
    assert status(door, "hc-console.socket") == "active"
    _, token = link(door, SHELL)

    async def run() -> bytes:
        async with open_console(door, SHELL, token) as ws:
            assert (await hello(ws))["kind"] == "terminal"
            await ws.send(b"touch /tmp/from-console; grep NoNewPrivs /proc/self/status; "
                          b"nc 127.0.0.1 1 </dev/null; echo DONE=$((40+2))\n")
            return await read_until(ws, b"DONE=42", timeout=30)

    seen = run_async(run())
    door.hc("exec", SHELL, "--", "test", "-f", "/tmp/from-console")
    # The shell is the user's: the proxy's sandbox (namespaces only) does not follow it in: no
    # NoNewPrivileges, and it may open network sockets (an AF_UNIX-only filter would refuse).
    assert re.search(rb"NoNewPrivs:\s+0\r\n", seen), seen
    assert b"Connection refused" in seen, seen
    assert status(door, "hc-console.service") == "active"


def test_the_proxy_unit_is_sandboxed(door: DevHost) -> None:
    shown = door.run("systemctl", "show", "hc-console.service", "-p",
                     "ProtectSystem,ProtectHome,PrivateTmp,ReadWritePaths,User").stdout
    assert "ProtectSystem=strict" in shown
    assert "ProtectHome=read-only" in shown
    assert "PrivateTmp=yes" in shown
    assert "/run/hc-console" in shown and "/var/lib/homecloud" in shown


def test_a_used_or_wrong_login_is_refused_through_the_door(door: DevHost) -> None:
    _, token = link(door, SHELL)

    async def refused(password: str) -> str:
        try:
            async with open_console(door, SHELL, token, password) as ws:
                await ws.recv()
                await ws.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return f"{closed.rcvd.code} {closed.rcvd.reason}"
        except InvalidStatus as error:  # the door refused the upgrade itself
            return f"HTTP {error.response.status_code}"
        return "opened"

    # A wrong password never reaches the proxy, nor uses the token up.
    assert run_async(refused("wrong password")) == "HTTP 401"

    async def twice() -> str:
        async with open_console(door, SHELL, token) as ws:
            await hello(ws)
        return await refused(PASSWORD)

    assert run_async(twice()).startswith("4003 console refused: unknown or already used")


def test_unknown_instance_has_no_console(door: DevHost) -> None:
    hc_fails(door, "console", "nosuchinstance", "--user", USER,
             message="nosuchinstance")


def test_unknown_user_gets_no_link(door: DevHost) -> None:
    hc_fails(door, "console", SHELL, "--user", "nosuchuser",
             message="no front-door user 'nosuchuser'")


def test_a_container_without_a_shell(door: DevHost) -> None:
    tree = "/tmp/console-noshell"
    door.run("sh", "-c", f"rm -rf {tree} && mkdir -p {tree}/bin {tree}/usr {tree}/etc "
             f"{tree}/tmp && cp /bin/busybox {tree}/bin/busybox")
    door.hc("image", "import", NO_SHELL, tree)
    try:
        door.hc("run", "-d", "-q", NO_SHELL, "--name", NO_SHELL, "--",
                "/bin/busybox", "sleep", "100000")
        error = hc_fails(door, "console", NO_SHELL, "--user", USER)
        assert error == (f"instance {NO_SHELL} has no shell (no /bin/sh in its image): there "
                         "is no terminal to open")
    finally:
        door.hc("rm", "-f", NO_SHELL, check=False)
        door.hc("image", "rm", NO_SHELL, check=False)


def test_console_page_without_a_login_goes_to_the_login_page(door: DevHost) -> None:
    import http.client

    conn = http.client.HTTPSConnection(door.address or "", 443, timeout=10, context=_tls())
    try:
        conn.request("GET", f"/_hc/console/{SHELL}")
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    # The page cannot see the fragment (the token) server-side: a script sends the browser to
    # the login page with the whole address, fragment included (the browser test follows it).
    assert response.status == 401
    assert '"/_hc/login?next="+encodeURIComponent(location.pathname+location.hash)' in body


def test_terminal_in_a_browser(door: DevHost, page: Page) -> None:
    # Not logged in: the login page, which comes back to the console, token and all.
    open_console_page(page, door, SHELL, USER, PASSWORD, "terminal")
    wait_for("the shell's prompt", lambda: "#" in terminal_text(page))
    page.keyboard.type("touch /tmp/from-browser; echo BROWSER=$((3*14))\n")
    page.wait_for_function(
        "document.querySelector('.xterm-rows').innerText.includes('BROWSER=42')")
    door.hc("exec", SHELL, "--", "test", "-f", "/tmp/from-browser")
    save_screenshot(page, "terminal")


@pytest.fixture(scope="module")
def sleeper(door: DevHost, debian_image: str) -> Iterator[str]:
    door.hc("run", debian_image, "--name", SLEEPER, "--idle", f"{IDLE}s", "-q")
    try:
        yield SLEEPER
    finally:
        door.hc("rm", "-f", SLEEPER, check=False)


def state(host: DevHost, name: str) -> str:
    return str(host.hc("inspect", name, json=True)["state"])


def test_a_sleeping_container_wakes_when_its_console_opens(door: DevHost,
                                                           sleeper: str) -> None:
    wait_for(f"{sleeper} asleep", lambda: state(door, sleeper) == "sleeping", timeout=60)
    _, token = link(door, sleeper)
    assert state(door, sleeper) == "sleeping"  # the link alone does not wake it

    async def run() -> list[str]:
        said = []
        async with open_console(door, sleeper, token) as ws:
            said.append(json.loads(await ws.recv())["kind"])
            said.append((await hello(ws))["kind"])
            await ws.send(b"echo AWAKE=$((2*21))\n")
            await read_until(ws, b"AWAKE=42", timeout=60)
            # Open for well over its idle time, with no connection: the console keeps it awake.
            await asyncio.sleep(IDLE * 3)
            said.append(state(door, sleeper))
            await ws.send(b"echo STILL=$((1+1))\n")
            await read_until(ws, b"STILL=2", timeout=30)
        return said

    assert run_async(run()) == ["starting", "terminal", "running"]
    # Closed: it sleeps again after its idle time.
    started = time.monotonic()
    wait_for(f"{sleeper} asleep again", lambda: state(door, sleeper) == "sleeping",
             timeout=60)
    assert time.monotonic() - started >= IDLE - 1
