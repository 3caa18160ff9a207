"""Console tokens: single use, one instance, one user, 60 s; the door's console locations and
the login's way back to a console (pure logic and a scratch database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.config import FrontdoorConfig
from homecloud.consoles import PAGE_DIR, PROXY_SOCKET
from homecloud.consoles.tokens import (
    SCREEN,
    TERMINAL,
    ConsoleTarget,
    ConsoleTokens,
    refusal,
    token_digest,
)
from homecloud.frontdoor.decisions import safe_next
from homecloud.frontdoor.nginx_conf import DoorFiles, render
from homecloud.state.store import Store

NOW = 1_000_000.0


@pytest.mark.parametrize(("row", "instance", "user", "now", "why"), [
    (("vm2", "alice", NOW + 60), "vm2", "alice", NOW, None),
    (None, "vm2", "alice", NOW, "unknown or already used token"),
    (("vm2", "alice", NOW + 60), "vm2", "alice", NOW + 60, "expired token"),
    (("vm1", "alice", NOW + 60), "vm2", "alice", NOW, "token is for another instance (vm1)"),
    (("vm2", "alice", NOW + 60), "vm2", "bob", NOW, "token is for another user"),
])
def test_refusal(row: tuple[str, str, float] | None, instance: str, user: str, now: float,
                 why: str | None) -> None:
    assert refusal(row, instance, user, now) == why


@pytest.fixture
def tokens(tmp_path: Path) -> ConsoleTokens:
    return ConsoleTokens(Store(tmp_path / "state.db"))


def test_a_token_opens_once(tokens: ConsoleTokens) -> None:
    target = ConsoleTarget(TERMINAL, argv=("nsenter", "--all"), note="a note")
    token = tokens.mint("web", "alice", target, NOW)
    assert len(token) >= 40
    assert tokens.redeem(token, "web", "alice", NOW + 1).target == target
    assert tokens.redeem(token, "web", "alice", NOW + 2).refused == \
        "unknown or already used token"


def test_only_digests_are_kept_and_refused_tokens_are_used_up(tokens: ConsoleTokens) -> None:
    token = tokens.mint("vm2", "alice", ConsoleTarget(SCREEN, socket="/run/vnc"), NOW)
    rows = tokens.store.query("SELECT digest FROM console_tokens")
    assert [row[0] for row in rows] == [token_digest(token)]
    assert tokens.redeem(token, "vm1", "alice", NOW).refused == \
        "token is for another instance (vm2)"
    assert tokens.redeem(token, "vm2", "alice", NOW).refused == "unknown or already used token"
    assert tokens.store.query("SELECT * FROM console_tokens") == []


def test_expired_tokens_are_swept(tokens: ConsoleTokens) -> None:
    old = tokens.mint("vm2", "alice", ConsoleTarget(SCREEN, socket="/s"), NOW)
    tokens.mint("vm3", "alice", ConsoleTarget(SCREEN, socket="/s"), NOW + 61)
    assert len(tokens.store.query("SELECT * FROM console_tokens")) == 1
    assert tokens.redeem(old, "vm2", "alice", NOW + 61).refused == \
        "unknown or already used token"


def test_the_door_serves_consoles() -> None:
    text = render(FrontdoorConfig(), DoorFiles(Path("/c.pem"), Path("/k.pem")), [])
    page = text.split("location ^~ /_hc/console/ {", 1)[1].split("}", 1)[0]
    assert "auth_request /_hc/auth/user;" in page and f"root {PAGE_DIR};" in page
    assert "error_page 401 = @hc_console_login;" in page
    socket = text.split("location ^~ /_hc/console-ws/ {", 1)[1].split("}", 1)[0]
    assert "auth_request /_hc/auth/user;" in socket
    assert f"proxy_pass http://unix:{PROXY_SOCKET}:;" in socket
    assert "proxy_set_header Upgrade $http_upgrade;" in socket
    assert "proxy_read_timeout 1d;" in socket and "proxy_set_header Cookie \"\";" in socket
    assert "proxy_set_header X-Remote-User $hc_user;" in socket
    assert "location ^~ /_hc/novnc/ {\n            alias /usr/share/novnc/;" in text


@pytest.mark.parametrize(("target", "safe"), [
    ("/_hc/console/vm2#abc", "/_hc/console/vm2#abc"),
    ("/_hc/console-ws/vm2", "/"),
    ("/_hc/login", "/"),
    ("//evil.example/_hc/console/x", "/"),
])
def test_a_login_returns_to_a_console(target: str, safe: str) -> None:
    assert safe_next(target) == safe
