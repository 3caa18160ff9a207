"""The front door's auth decisions and refusals (pure), against a fake set of accounts."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pytest

from homecloud.frontdoor.decisions import (
    BAD_CREDENTIALS,
    BANNED,
    FORBIDDEN,
    KEEP_BAN_ANSWER,
    LOGIN,
    AuthQuery,
    decide,
    login,
    parse_authorization,
    refusal,
    safe_next,
)

NOW = 1000.0


@dataclass
class FakeAccounts:
    passwords: dict[str, str] = field(default_factory=lambda: {"alice": "pw-alice",
                                                               "bob": "pw-bob"})
    member: dict[str, frozenset[str]] = field(default_factory=lambda: {
        "alice": frozenset({"family"}), "bob": frozenset(), "root": frozenset({"admin"})})
    sessions: dict[str, str] = field(default_factory=lambda: {"s-alice": "alice"})
    tokens: dict[str, str] = field(default_factory=lambda: {"t-bob": "bob"})
    bans: dict[str, float] = field(default_factory=dict)
    failures: list[tuple[str, str | None]] = field(default_factory=list)
    hashed: int = 0

    def banned(self, address: str, user: str | None, now: float) -> float | None:
        ends = [self.bans[k] for k in (f"address:{address}", f"user:{user}") if k in self.bans]
        return max(ends) if ends else None

    def session_user(self, session: str, now: float) -> str | None:
        return self.sessions.get(session)

    def token_user(self, token: str) -> str | None:
        return self.tokens.get(token)

    def check_password(self, user: str, password: str) -> bool:
        self.hashed += 1
        return self.passwords.get(user) == password

    def groups(self, user: str) -> frozenset[str]:
        return self.member.get(user, frozenset())

    def failed(self, address: str, user: str | None, now: float) -> None:
        self.failures.append((address, user))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_no_credentials_asks_for_a_login() -> None:
    accounts = FakeAccounts()
    assert decide(AuthQuery("10.0.0.1", None), accounts, NOW).deny == LOGIN
    assert accounts.failures == []


def test_session_token_and_basic_credentials() -> None:
    accounts = FakeAccounts()
    assert decide(AuthQuery("a", None, session="s-alice"), accounts, NOW).user == "alice"
    assert decide(AuthQuery("a", None, "Bearer t-bob"), accounts, NOW).user == "bob"
    assert decide(AuthQuery("a", None, basic("bob", "pw-bob")), accounts, NOW).user == "bob"
    assert accounts.failures == []


def test_forged_session_is_no_session_and_is_not_counted() -> None:
    accounts = FakeAccounts()
    assert decide(AuthQuery("a", None, session="forged"), accounts, NOW).deny == LOGIN
    assert accounts.failures == []


@pytest.mark.parametrize("header, failure", [
    (basic("bob", "wrong"), ("a", "bob")),
    (basic("nobody", "x"), ("a", "nobody")),
    ("Bearer forged", ("a", None)),
])
def test_wrong_credentials_are_401_and_counted(header: str, failure: tuple[str, str | None],
                                               ) -> None:
    accounts = FakeAccounts()
    decision = decide(AuthQuery("a", None, header), accounts, NOW)
    assert (decision.deny, decision.user) == (BAD_CREDENTIALS, None)
    assert accounts.failures == [failure]


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                                    "Digest x", "Bearer "])
def test_malformed_authorization(header: str) -> None:
    assert parse_authorization(header) is None
    assert decide(AuthQuery("a", None, header), FakeAccounts(), NOW).deny == BAD_CREDENTIALS


def test_a_banned_address_is_refused_before_any_hash() -> None:
    accounts = FakeAccounts(bans={"address:a": NOW + 10.2})
    decision = decide(AuthQuery("a", None, basic("bob", "pw-bob")), accounts, NOW)
    assert (decision.deny, decision.retry_after) == (BANNED, 11)
    assert accounts.hashed == 0
    assert decide(AuthQuery("a", None, session="s-alice"), accounts, NOW).deny == BANNED


def test_only_a_banned_address_may_be_answered_by_nginx_alone() -> None:
    """nginx keeps a refusal for the whole address (whatever it sends next), never longer than
    the ban nor KEEP_BAN_ANSWER; a banned user name's refusal depends on what is sent."""
    long_ban = FakeAccounts(bans={"address:a": NOW + 300})
    assert decide(AuthQuery("a", None), long_ban, NOW).keep_seconds == KEEP_BAN_ANSWER
    ending = FakeAccounts(bans={"address:a": NOW + 3})
    assert decide(AuthQuery("a", None), ending, NOW).keep_seconds == 3
    user_ban = FakeAccounts(bans={"user:bob": NOW + 300})
    decision = decide(AuthQuery("b", None, basic("bob", "pw-bob")), user_ban, NOW)
    assert decision.deny == BANNED and decision.keep_seconds == 0
    assert decide(AuthQuery("b", None, basic("alice", "pw-alice")), user_ban,
                  NOW).keep_seconds == 0
    assert decide(AuthQuery("b", None, basic("alice", "no")), user_ban, NOW).keep_seconds == 0


def test_a_banned_user_name_is_refused_from_anywhere() -> None:
    accounts = FakeAccounts(bans={"user:bob": NOW + 5})
    assert decide(AuthQuery("b", None, basic("bob", "pw-bob")), accounts, NOW).deny == BANNED
    assert login("b", "bob", "pw-bob", accounts, NOW).deny == BANNED
    assert accounts.hashed == 0
    # Others, and bob's own token, are not affected.
    assert decide(AuthQuery("b", None, basic("alice", "pw-alice")), accounts, NOW).allowed
    assert decide(AuthQuery("b", None, "Bearer t-bob"), accounts, NOW).user == "bob"


def test_groups_and_admins() -> None:
    accounts = FakeAccounts()
    family = AuthQuery("a", "family", basic("bob", "pw-bob"))
    assert decide(family, accounts, NOW).deny == FORBIDDEN
    assert decide(AuthQuery("a", "family", session="s-alice"), accounts, NOW).allowed
    accounts.passwords["root"] = "pw-root"
    assert decide(AuthQuery("a", "family", basic("root", "pw-root")), accounts, NOW).allowed


def test_login_form() -> None:
    accounts = FakeAccounts()
    assert login("a", "alice", "pw-alice", accounts, NOW).user == "alice"
    assert login("a", "alice", "nope", accounts, NOW).deny == BAD_CREDENTIALS
    assert accounts.failures == [("a", "alice")]


@pytest.mark.parametrize("target, safe", [
    ("/app/x?y=1", "/app/x?y=1"), (None, "/"), ("", "/"), ("//evil.example/", "/"),
    ("https://evil.example/", "/"), ("/\\evil", "/"), ("/a b", "/"), ("/_hc/login", "/"),
])
def test_only_local_paths_after_login(target: str | None, safe: str) -> None:
    assert safe_next(target) == safe


def test_refusals() -> None:
    browser = refusal(LOGIN, "/app/a?b=1", "text/html,application/xhtml+xml")
    assert (browser.status, browser.headers["Location"]) == (
        302, "/_hc/login?next=/app/a%3Fb%3D1")
    script = refusal(LOGIN, "/app/", "*/*")
    assert script.status == 401 and script.headers["WWW-Authenticate"].startswith("Basic")
    assert refusal(BAD_CREDENTIALS, "/app/", "text/html").status == 401
    assert refusal(FORBIDDEN, "/", "").status == 403
    banned = refusal(BANNED, "/", "", 42)
    assert (banned.status, banned.headers["Retry-After"]) == (429, "42")
