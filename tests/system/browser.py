"""A real browser for system tests: Playwright driving Debian's Chromium, headless.

A test module that wants it declares ``pytest_plugins = ("browser",)`` and asks for:

    browser    Chromium, launched once per module
    page       a fresh page (its own cookies) per test; the door's self-signed certificate is
               accepted; a screenshot of where it ended is saved when the test ends

and calls ``door_url(host, path)`` for a dev host's front door and
``save_screenshot(page, name)`` (returns the file, checked not blank) for pictures worth
keeping. Screenshots go under $HC_TEST_ARTEFACTS (default /var/tmp/homecloud-test-artefacts),
one folder per test. Without Playwright or /usr/bin/chromium the tests skip, naming what to
install.
"""

from __future__ import annotations

import contextlib
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from homecloud.devhost import DevHost

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
# Headless without a GPU or a sandbox (tests run as root), and no calls home: the machine has
# no internet and Playwright must not fetch a browser of its own.
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update")
ARTEFACTS = Path(os.environ.get("HC_TEST_ARTEFACTS", "/var/tmp/homecloud-test-artefacts"))
TIMEOUT_MS = 15_000


def door_url(host: DevHost, path: str = "/") -> str:
    """The dev host's front door (HTTPS on 443 of its own address) at ``path``."""
    if host.address is None:
        pytest.skip("this dev host shares the machine's network: its front door is not its own")
    literal = f"[{host.address}]" if ":" in host.address else host.address
    return f"https://{literal}{path}"


def artefact_dir(node: pytest.Item) -> Path:
    folder = ARTEFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", node.nodeid)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def png_colours(data: bytes) -> int:
    """How many distinct byte values the decoded scanlines of a PNG hold: 1-3 for a page of
    one colour (the filter bytes add a couple), dozens for anything drawn with text."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG")
    pos, idat = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


def save_screenshot(page: Page, name: str, node: pytest.Item | None = None) -> Path:
    """Save a full-page screenshot as ``name``.png in the test's artefact folder; fail if the
    picture is blank (one colour)."""
    item = node or getattr(page, "_hc_test_item", None)
    folder = artefact_dir(item) if item is not None else ARTEFACTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    data = page.screenshot(path=str(path), full_page=True)
    if png_colours(data) <= 8:
        raise AssertionError(f"the screenshot {path} is blank (one colour)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need Playwright in the venv (pip install playwright; "
                    "python3 -m homecloud.host.bootstrap test installs it)")
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need {CHROMIUM} (apt-get install --no-install-recommends "
                    "chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=list(CHROMIUM_ARGS))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    # The door's certificate is self-signed and made per host: this browser is told to accept
    # it, as a user does once.
    context = browser.new_context(ignore_https_errors=True,
                                  viewport={"width": 1024, "height": 768})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    opened._hc_test_item = request.node  # type: ignore[attr-defined]
    try:
        yield opened
    finally:
        # A page that crashed has no picture; the test itself says why.
        with contextlib.suppress(Exception):
            opened.screenshot(path=str(artefact_dir(request.node) / "end.png"), full_page=True)
        context.close()
