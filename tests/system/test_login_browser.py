"""The front door's login page in a real browser (Chromium through Playwright): a visit to a
route without a session is sent to the login form, a wrong password shows the error, the right
one lands on the route's page with the session cookie set. In the session's dev host, under
names of this module's own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from browser import door_url, save_screenshot
from cli_checks import ensure_busybox, wait_for

from homecloud.devhost import DevHost

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.system
pytest_plugins = ("browser",)

PAGE = "the browser got through"
PASSWORD = "browser password 1"
USER = "browser_user"
INSTANCE = "browserweb"
ROUTE = "/browser"


@pytest.fixture(scope="module")
def door(devhost: DevHost) -> Iterator[DevHost]:
    host = devhost
    door_url(host)  # skips when the dev host has no address of its own
    wait_for("the front door", lambda: host.run(
        "systemctl", "is-active", "hc-frontdoor.service", check=False).stdout.strip()
        == "active")
    image = ensure_busybox(host)
    script = (f"mkdir -p /www{ROUTE} && echo '<p id=page>{PAGE}</p>' > /www{ROUTE}/index.html "
              "&& exec busybox httpd -f -p 80 -h /www")
    host.hc("run", "-d", "-q", image, "--name", INSTANCE, "--", "sh", "-c", script)
    host.run(*host.hc_argv(), "user", "add", USER, input=PASSWORD + "\n")
    host.hc("route", "add", ROUTE, "--to", f"{INSTANCE}:80")
    try:
        yield host
    finally:
        host.hc("route", "rm", ROUTE, check=False)
        host.hc("user", "rm", USER, check=False)
        host.hc("rm", "-f", INSTANCE, check=False)


def test_login_page_in_a_browser(door: DevHost, page: Page) -> None:
    page.goto(door_url(door, f"{ROUTE}/index.html"))
    # Sent to the login form, which will bring the browser back here.
    assert "/_hc/login?next=" in page.url and ROUTE in page.url
    assert page.title() == "homecloud: log in"
    save_screenshot(page, "login-form")

    page.fill("#user", USER)
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert page.inner_text("[role=alert]") == "Wrong user name or password."
    assert page.input_value("#user") == USER  # kept, so only the password is typed again
    assert not [c for c in page.context.cookies() if c["name"] == "hc_session"]
    save_screenshot(page, "wrong-password")

    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#page")
    assert page.url == door_url(door, f"{ROUTE}/index.html")
    assert page.inner_text("#page") == PAGE
    session = [c for c in page.context.cookies() if c["name"] == "hc_session"]
    assert len(session) == 1
    assert session[0]["httpOnly"] and session[0]["secure"]
    shot = save_screenshot(page, "logged-in")
    assert shot.stat().st_size > 1000
