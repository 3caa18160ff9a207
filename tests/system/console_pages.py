"""`hc console` links opened in a browser by a front-door user, as a person does: the link,
the login page it leads to, and the console the page shows after it (a VM's screen drawn by
noVNC, or a terminal drawn by xterm.js). The browser comes from browser.py (a test module
declares ``pytest_plugins = ("browser",)`` and asks for ``page``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from browser import artefact_dir, door_url, png_colours
from cli_checks import wait_for

from homecloud.devhost import DevHost

if TYPE_CHECKING:
    from playwright.sync_api import Page

SCREEN_CANVAS = "#screen canvas"
TERMINAL_ROWS = ".xterm-rows"
# True once noVNC's canvas holds a picture: sized, and not all one colour.
CANVAS_DRAWN = """(selector) => {
  const canvas = document.querySelector(selector);
  if (!canvas || !canvas.width || !canvas.height) return false;
  const pixels = new Uint32Array(canvas.getContext("2d")
    .getImageData(0, 0, canvas.width, canvas.height).data.buffer);
  return pixels.some((pixel) => pixel !== pixels[0]);
}"""


def add_door_user(host: DevHost, user: str, password: str) -> None:
    """A front-door user (`hc user add`, the password on stdin)."""
    wait_for("the front door", lambda: host.run(
        "systemctl", "is-active", "hc-frontdoor.service", check=False).stdout.strip()
        == "active", timeout=60)
    host.run(*host.hc_argv(), "user", "add", user, input=password + "\n")


def console_link(host: DevHost, name: str, user: str) -> tuple[str, str]:
    """`hc console NAME --user USER`: the link's path and its token."""
    url = host.hc("console", name, "--user", user).stdout.strip()
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.path == f"/_hc/console/{name}", url
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", parts.fragment), url
    return parts.path, parts.fragment


def open_console_page(page: Page, host: DevHost, name: str, user: str, password: str,
                      kind: str) -> None:
    """Open `hc console NAME`'s link not logged in: the login page comes first and leads back
    to the console, which must be of ``kind`` ("screen" or "terminal") and connected."""
    path, token = console_link(host, name, user)
    problems: list[str] = []  # said on failure: what the page's scripts complained of
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" else None)
    page.goto(door_url(host, f"{path}#{token}"))
    page.wait_for_selector("#user")
    assert "/_hc/login?next=" in page.url
    page.fill("#user", user)
    page.fill("#password", password)
    page.click("button[type=submit]")
    try:
        page.wait_for_function(f"window.hcConsole && window.hcConsole.kind === '{kind}'")
        page.wait_for_function("document.getElementById('status').textContent === "
                               "'connected'")
    except Exception:
        raise AssertionError(f"no connected {kind} on the page: status "
                             f"{page.inner_text('#status')!r}, {problems}") from None
    assert urlsplit(page.url).path == path
    assert page.inner_text("#name") == name


def terminal_text(page: Page) -> str:
    return page.inner_text(TERMINAL_ROWS)


def wait_for_screen(page: Page, name: str, timeout_ms: float = 60_000) -> Path:
    """Wait until noVNC has drawn the VM's screen; save the canvas alone as ``name``.png (a
    picture of the whole page would not be blank even with a black screen: its header has
    text) and fail if it is one colour."""
    page.wait_for_function(CANVAS_DRAWN, arg=SCREEN_CANVAS, timeout=timeout_ms)
    path = artefact_dir(page._hc_test_item) / f"{name}.png"  # type: ignore[attr-defined]
    data = page.locator(SCREEN_CANVAS).screenshot(path=str(path))
    if png_colours(data) <= 8:
        raise AssertionError(f"the screen {path} is blank (one colour)")
    return path
