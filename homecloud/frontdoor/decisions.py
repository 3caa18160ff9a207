"""What the door answers: the auth decision for each request nginx asks about, and the answer a
refused request gets. Pure: the facts (sessions, tokens, passwords, bans) come through the
``Accounts`` protocol, so the rules are tested without a database or a hash."""

from __future__ import annotations

import base64
import binascii
import html
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from homecloud.frontdoor import OWN_PREFIX
from homecloud.frontdoor.accounts import member_of

# Why a request was refused (the X-HC-Deny header between the auth endpoint and nginx).
LOGIN = "login"  # no credentials: browsers go to the login page, scripts get 401
BAD_CREDENTIALS = "credentials"  # wrong password or unknown token: 401
FORBIDDEN = "forbidden"  # logged in, not in the route's group: 403
BANNED = "banned"  # too many failed logins: 429
# The one place under OWN_PREFIX a login returns to: a console's page (homecloud/consoles).
CONSOLE_PAGES = f"{OWN_PREFIX}console/"
REALM = 'Basic realm="homecloud", charset="UTF-8"'
# A banned client's answer; nginx gives it too (nginx_conf.py), with its own seconds.
BANNED_MESSAGE = "too many failed logins: try again in {} s\n"
# How long nginx may keep a banned address's answer and give it without asking again: bounds
# how stale its Retry-After gets and how long a lifted ban still answers 429.
KEEP_BAN_ANSWER = 10


class Accounts(Protocol):
    def banned(self, address: str, user: str | None, now: float) -> float | None:
        """The end of a ban on ``address`` (or on ``user``, when given), if any."""

    def session_user(self, session: str, now: float) -> str | None: ...

    def token_user(self, token: str) -> str | None: ...

    def check_password(self, user: str, password: str) -> bool: ...

    def groups(self, user: str) -> frozenset[str]: ...

    def failed(self, address: str, user: str | None, now: float) -> None:
        """Count a failed login toward the bans of ``address`` and ``user``."""


@dataclass(frozen=True)
class AuthQuery:
    address: str  # the client's address, as nginx saw it
    group: str | None  # the route's group (None: any user)
    authorization: str | None = None
    session: str | None = None  # the session cookie's value


@dataclass(frozen=True)
class Decision:
    user: str | None = None  # allowed as this user
    deny: str | None = None  # else why not
    retry_after: int = 0  # for BANNED: seconds until the ban ends
    # For BANNED: the client's address itself is banned, so every request from it gets this
    # answer until the ban ends, whatever it sends.
    whole_address: bool = False

    @property
    def allowed(self) -> bool:
        return self.deny is None

    @property
    def keep_seconds(self) -> int:
        """How long nginx may answer the same address with this decision without asking."""
        return min(self.retry_after, KEEP_BAN_ANSWER) if self.whole_address else 0


def parse_authorization(header: str) -> tuple[str, str, str] | None:
    """("basic", user, password) or ("bearer", "", token) from an Authorization header; None
    for anything else (an unknown scheme, bad base64)."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return "bearer", "", value
    if scheme.lower() == "basic":
        try:
            text = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, password = text.partition(":")
        return ("basic", user, password) if colon else None
    return None


def _banned(retry_at: float, now: float, whole_address: bool = False) -> Decision:
    return Decision(deny=BANNED, retry_after=max(1, int(retry_at - now + 0.999)),
                    whole_address=whole_address)


def decide(query: AuthQuery, accounts: Accounts, now: float) -> Decision:
    """Who is asking, and may they use the route? A banned address is refused whatever it
    sends; credentials that fail count toward bans; a session cookie that does not match (forged
    or expired) is the same as none."""
    until = accounts.banned(query.address, None, now)
    if until is not None:
        return _banned(until, now, whole_address=True)
    user: str | None = None
    if query.authorization:
        credentials = parse_authorization(query.authorization)
        if credentials is None:
            return Decision(deny=BAD_CREDENTIALS)
        scheme, name, secret = credentials
        if scheme == "basic":
            until = accounts.banned(query.address, name, now)
            if until is not None:
                return _banned(until, now)
            user = name if accounts.check_password(name, secret) else None
        else:
            user = accounts.token_user(secret)
        if user is None:
            accounts.failed(query.address, name or None, now)
            return Decision(deny=BAD_CREDENTIALS)
    elif query.session:
        user = accounts.session_user(query.session, now)
    if user is None:
        return Decision(deny=LOGIN)
    if not member_of(accounts.groups(user), query.group):
        return Decision(user=user, deny=FORBIDDEN)
    return Decision(user=user)


def login(address: str, user: str, password: str, accounts: Accounts, now: float) -> Decision:
    """A login form's answer: banned, wrong, or who logged in."""
    until = accounts.banned(address, user, now)
    if until is not None:
        return _banned(until, now)
    if accounts.check_password(user, password):
        return Decision(user=user)
    accounts.failed(address, user, now)
    return Decision(deny=BAD_CREDENTIALS)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on the same site only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(c) < 0x21 for c in target) or (target.startswith(OWN_PREFIX)
                                                       and not target.startswith(CONSOLE_PAGES)):
        return "/"
    return target


def refusal(deny: str, uri: str, accept: str, retry_after: int = 0) -> Answer:
    """The answer to a refused request: browsers without a login go to the login page and come
    back to ``uri``; scripts get 401 with a Basic challenge; 403 and 429 say why."""
    if deny == BANNED:
        return Answer(429, {"Retry-After": str(retry_after)},
                      BANNED_MESSAGE.format(retry_after))
    if deny == FORBIDDEN:
        return Answer(403, {}, "you are logged in, but not in the group this route is for\n")
    if deny == LOGIN and "text/html" in accept:
        target = quote(safe_next(uri), safe="/")
        return Answer(302, {"Location": f"{OWN_PREFIX}login?next={target}"},
                      f'<a href="{OWN_PREFIX}login?next={html.escape(target)}">log in</a>\n')
    message = "wrong user name, password or token\n" if deny == BAD_CREDENTIALS else \
        "log in: a session, Basic credentials or a bearer token\n"
    return Answer(401, {"WWW-Authenticate": REALM}, message)
