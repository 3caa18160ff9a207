"""Console tokens: random, single-use, bound to one instance and one front-door user, valid
for 60 s. The agent mints them, the proxy redeems them; they meet in the state database (WAL
keeps the two processes apart), where only a digest of each token is kept."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass

from homecloud.consoles import TOKEN_SECONDS
from homecloud.state.store import Schema, Store

SCHEMA = Schema("consoles", ("""
CREATE TABLE IF NOT EXISTS console_tokens (
    digest      TEXT PRIMARY KEY,
    instance    TEXT NOT NULL,
    user        TEXT NOT NULL,
    target      TEXT NOT NULL,
    expires     REAL NOT NULL
);
""",))

SCREEN = "screen"  # a VNC server on a UNIX socket
TERMINAL = "terminal"  # a command run on a terminal (a shell, a serial console)
# A sleeping (--idle) instance: the proxy wakes it when the page opens, then asks the agent what
# its console reaches (a screen's socket or a shell's argv exist only once it runs).
ASLEEP = "asleep"


@dataclass(frozen=True)
class ConsoleTarget:
    """What a console reaches: a VNC ``socket``, ``argv`` run on a pseudo-terminal, or (ASLEEP)
    nothing until the instance is woken."""

    kind: str
    socket: str | None = None
    argv: tuple[str, ...] = ()
    note: str = ""  # shown on the page (e.g. "the serial console: this VM has no screen")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ConsoleTarget:
        data = json.loads(text)
        return cls(data["kind"], data.get("socket"), tuple(data.get("argv", ())),
                   data.get("note", ""))


@dataclass(frozen=True)
class Redeemed:
    """A token's redemption: the target, or why it was refused."""

    target: ConsoleTarget | None = None
    refused: str | None = None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def refusal(row: tuple[str, str, float] | None, instance: str, user: str,
            now: float) -> str | None:
    """Why a token whose row is ``(instance, user, expires)`` (None: no such token: forged,
    or already used) may not open ``instance`` for ``user``; None when it may."""
    if row is None:
        return "unknown or already used token"
    bound_instance, bound_user, expires = row
    if now >= expires:
        return "expired token"
    if bound_instance != instance:
        return f"token is for another instance ({bound_instance})"
    if bound_user != user:
        return "token is for another user"
    return None


class ConsoleTokens:
    def __init__(self, store: Store) -> None:
        store.require(SCHEMA)
        self.store = store

    def mint(self, instance: str, user: str, target: ConsoleTarget, now: float,
             seconds: float = TOKEN_SECONDS) -> str:
        token = secrets.token_urlsafe(32)
        with self.store.transaction() as db:
            db.execute("DELETE FROM console_tokens WHERE expires <= ?", (now,))
            db.execute("INSERT INTO console_tokens VALUES (?, ?, ?, ?, ?)",
                       (token_digest(token), instance, user, target.to_json(), now + seconds))
        return token

    def redeem(self, token: str, instance: str, user: str, now: float) -> Redeemed:
        """Use ``token`` up (whatever the answer: a refused token is not tried again) and say
        what it opens."""
        with self.store.transaction() as db:
            found = db.execute("SELECT instance, user, expires, target FROM console_tokens "
                               "WHERE digest = ?", (token_digest(token),)).fetchone()
            if found is not None:
                db.execute("DELETE FROM console_tokens WHERE digest = ?", (token_digest(token),))
        row = None if found is None else (found[0], found[1], float(found[2]))
        why = refusal(row, instance, user, now)
        if why is not None:
            return Redeemed(refused=why)
        return Redeemed(target=ConsoleTarget.from_json(found[3]))
