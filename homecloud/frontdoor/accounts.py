"""Users and groups of the front door: names and what a listing shows. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from homecloud.errors import UserError
from homecloud.frontdoor import ADMIN_GROUP

MAX_ACCOUNT_NAME = 32
# Names appear in Basic credentials (no ':'), cookies, logs and nginx configuration: keep them
# to the shape of Unix user names.
_ACCOUNT_RE = re.compile(r"[a-z_][a-z0-9_-]*")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # hashing is costly per byte: a bound keeps one request from costing more


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: list[str]
    admin: bool
    tokens: int
    banned_until: float | None  # a ban on the name, from failed logins


def validate_account_name(name: str, what: str = "user name") -> str:
    shown = repr(name) if name.isprintable() else ascii(name)
    if not name:
        raise UserError(f"{what} must not be empty")
    if len(name) > MAX_ACCOUNT_NAME:
        raise UserError(f"{what} {shown[:40]} is too long (at most {MAX_ACCOUNT_NAME} "
                        "characters)")
    if not _ACCOUNT_RE.fullmatch(name):
        raise UserError(f"{what} {shown} is invalid: use lower-case letters, digits, '_' and "
                        "'-', starting with a letter or '_'")
    return name


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password is too short (at least {MIN_PASSWORD} characters)")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password is too long (at most {MAX_PASSWORD} characters)")
    if not password.isprintable():
        raise UserError("password must not contain control characters")
    return password


def member_of(groups: set[str] | frozenset[str], required: str | None) -> bool:
    """Whether a user in ``groups`` may use a route open to ``required`` (None: any user);
    admins may use every route."""
    return required is None or required in groups or ADMIN_GROUP in groups
