"""The front door's share of the state database: users, their groups, sessions, tokens,
routes, failed logins and bans. Read and written by the agent (users, routes) and by the auth
endpoint (sessions, failures, bans), two processes: SQLite's WAL keeps them apart."""

from __future__ import annotations

from homecloud.errors import Conflict, NotFound
from homecloud.frontdoor.accounts import UserInfo
from homecloud.frontdoor.bans import BanPolicy, address_key, user_key
from homecloud.frontdoor.routing import Route, clash
from homecloud.state.store import Schema, Store

# IF NOT EXISTS: the agent and the auth endpoint may both bring the tables to version 1 at once.
SCHEMA = Schema("frontdoor", ("""
CREATE TABLE IF NOT EXISTS frontdoor_users (
    name        TEXT PRIMARY KEY,
    hash        TEXT NOT NULL,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS frontdoor_groups (
    user        TEXT NOT NULL REFERENCES frontdoor_users(name) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    PRIMARY KEY (user, name)
);
CREATE TABLE IF NOT EXISTS frontdoor_sessions (
    digest      TEXT PRIMARY KEY,
    user        TEXT NOT NULL REFERENCES frontdoor_users(name) ON DELETE CASCADE,
    expires     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS frontdoor_tokens (
    digest      TEXT PRIMARY KEY,
    user        TEXT NOT NULL REFERENCES frontdoor_users(name) ON DELETE CASCADE,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS frontdoor_routes (
    host        TEXT NOT NULL,
    path        TEXT NOT NULL,
    instance    TEXT NOT NULL,
    port        INTEGER NOT NULL,
    grp         TEXT,
    public      INTEGER NOT NULL,
    address     TEXT,
    PRIMARY KEY (host, path)
);
CREATE TABLE IF NOT EXISTS frontdoor_failures (
    key         TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS frontdoor_failures_key ON frontdoor_failures (key, at);
CREATE TABLE IF NOT EXISTS frontdoor_bans (
    key         TEXT PRIMARY KEY,
    until       REAL NOT NULL
);
""", """
ALTER TABLE frontdoor_routes ADD COLUMN lambda TEXT;
"""))


class FrontdoorRecords:
    def __init__(self, store: Store) -> None:
        store.require(SCHEMA)
        self.store = store

    # --- users -----------------------------------------------------------------------------

    def add_user(self, name: str, hashed: str, groups: set[str], now: float) -> None:
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM frontdoor_users WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"user {name!r} exists; change its password with "
                               f"`hc user passwd {name}`")
            db.execute("INSERT INTO frontdoor_users VALUES (?, ?, ?)", (name, hashed, now))
            db.executemany("INSERT INTO frontdoor_groups VALUES (?, ?)",
                           [(name, group) for group in sorted(groups)])

    def _require_user(self, name: str) -> None:
        if not self.store.query("SELECT 1 FROM frontdoor_users WHERE name = ?", (name,)):
            raise NotFound(f"no user {name!r} (see `hc user ls`)")

    def remove_user(self, name: str) -> None:
        """The user, their groups, sessions and tokens."""
        if not self.store.execute("DELETE FROM frontdoor_users WHERE name = ?", (name,)):
            raise NotFound(f"no user {name!r} (see `hc user ls`)")

    def set_password(self, name: str, hashed: str) -> None:
        """A new password logs the user's browsers out."""
        with self.store.transaction() as db:
            if not db.execute("UPDATE frontdoor_users SET hash = ? WHERE name = ?",
                              (hashed, name)).rowcount:
                raise NotFound(f"no user {name!r} (see `hc user ls`)")
            db.execute("DELETE FROM frontdoor_sessions WHERE user = ?", (name,))

    def password_hash(self, name: str) -> str | None:
        rows = self.store.query("SELECT hash FROM frontdoor_users WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def groups(self, name: str) -> frozenset[str]:
        rows = self.store.query("SELECT name FROM frontdoor_groups WHERE user = ?", (name,))
        return frozenset(str(row[0]) for row in rows)

    def users(self, now: float) -> list[UserInfo]:
        users = [str(row[0]) for row in
                 self.store.query("SELECT name FROM frontdoor_users ORDER BY name")]
        tokens = {str(row[0]): int(row[1]) for row in self.store.query(
            "SELECT user, COUNT(*) FROM frontdoor_tokens GROUP BY user")}
        bans = self.bans(now)
        out = []
        for name in users:
            groups = sorted(self.groups(name))
            out.append(UserInfo(name, [g for g in groups if g != "admin"], "admin" in groups,
                                tokens.get(name, 0), bans.get(user_key(name))))
        return out

    # --- sessions and tokens -----------------------------------------------------------------

    def add_session(self, digest: str, user: str, expires: float, now: float) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM frontdoor_sessions WHERE expires <= ?", (now,))
            db.execute("INSERT INTO frontdoor_sessions VALUES (?, ?, ?)",
                       (digest, user, expires))

    def session_user(self, digest: str, now: float) -> str | None:
        rows = self.store.query("SELECT user FROM frontdoor_sessions WHERE digest = ? AND "
                                "expires > ?", (digest, now))
        return str(rows[0][0]) if rows else None

    def end_session(self, digest: str) -> None:
        self.store.execute("DELETE FROM frontdoor_sessions WHERE digest = ?", (digest,))

    def add_token(self, digest: str, user: str, now: float) -> None:
        self._require_user(user)
        self.store.execute("INSERT INTO frontdoor_tokens VALUES (?, ?, ?)", (digest, user, now))

    def token_user(self, digest: str) -> str | None:
        rows = self.store.query("SELECT user FROM frontdoor_tokens WHERE digest = ?", (digest,))
        return str(rows[0][0]) if rows else None

    # --- failed logins and bans ----------------------------------------------------------------

    def banned(self, keys: list[str], now: float) -> float | None:
        marks = ", ".join("?" * len(keys))
        rows = self.store.query(f"SELECT MAX(until) FROM frontdoor_bans WHERE key IN ({marks}) "
                                "AND until > ?", (*keys, now))
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def fail(self, keys: list[str], policy: BanPolicy, now: float) -> list[tuple[str, float]]:
        """Count a failure against each key; returns the bans it starts (key, until)."""
        started = []
        with self.store.transaction() as db:
            db.execute("DELETE FROM frontdoor_failures WHERE at <= ?", (policy.since(now),))
            db.execute("DELETE FROM frontdoor_bans WHERE until <= ?", (now,))
            for key in keys:
                db.execute("INSERT INTO frontdoor_failures VALUES (?, ?)", (key, now))
                count = db.execute("SELECT COUNT(*) FROM frontdoor_failures WHERE key = ?",
                                   (key,)).fetchone()[0]
                until = policy.ban_until(int(count), now)
                if until is not None:
                    db.execute("INSERT OR REPLACE INTO frontdoor_bans VALUES (?, ?)",
                               (key, until))
                    db.execute("DELETE FROM frontdoor_failures WHERE key = ?", (key,))
                    started.append((key, until))
        return started

    def bans(self, now: float) -> dict[str, float]:
        return {str(k): float(v) for k, v in
                self.store.query("SELECT key, until FROM frontdoor_bans WHERE until > ?",
                                 (now,))}

    # --- routes ------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [Route(row["host"], row["path"], row["instance"], int(row["port"]), row["grp"],
                      bool(row["public"]), row["address"], row["lambda"])
                for row in self.store.query("SELECT * FROM frontdoor_routes "
                                            "ORDER BY host, path")]

    def add_route(self, route: Route) -> None:
        with self.store.transaction() as db:
            existing = [Route(r[0], r[1], r[2], r[3], lambda_name=r[4]) for r in db.execute(
                "SELECT host, path, instance, port, lambda FROM frontdoor_routes").fetchall()]
            taken = clash(route, existing)
            if taken is not None:
                where = f"lambda {taken.lambda_name}" if taken.lambda_name else taken.instance
                raise Conflict(f"route {route.name} exists (to {where}); remove it "
                               f"first with `hc route rm {route.name}`")
            db.execute("INSERT INTO frontdoor_routes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (route.host, route.path, route.instance, route.port, route.group,
                        int(route.public), route.address, route.lambda_name))

    def remove_route(self, host: str, path: str, name: str) -> None:
        if not self.store.execute("DELETE FROM frontdoor_routes WHERE host = ? AND path = ?",
                                  (host, path)):
            raise NotFound(f"no route {name} (see `hc route ls`)")

    def set_addresses(self, routes: list[Route]) -> None:
        with self.store.transaction() as db:
            db.executemany("UPDATE frontdoor_routes SET address = ? WHERE host = ? AND path = ?",
                           [(r.address, r.host, r.path) for r in routes])


def address_keys(address: str, user: str | None) -> list[str]:
    return [address_key(address)] + ([user_key(user)] if user else [])

