"""The snapshots' share of the state database: policies, and which snapshots each replication
target holds (what the next incremental stream is based on, and what must not be pruned).

Snapshots themselves are not recorded here: the pool is their record. Beside it, only how each
was made consistent (a guest file-system freeze, a cgroup freeze, nothing) is noted."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from homecloud.state.store import Schema, Store

SCHEMA = Schema("snapshots", ("""
CREATE TABLE IF NOT EXISTS snapshot_policies (
    instance        TEXT PRIMARY KEY,
    keep            TEXT NOT NULL,
    every           INTEGER NOT NULL,
    replicate_to    TEXT,
    last_run        REAL,
    last_snapshot   TEXT,
    last_error      TEXT
);
CREATE TABLE IF NOT EXISTS snapshot_replicas (
    instance    TEXT NOT NULL,
    snapshot    TEXT NOT NULL,
    peer        TEXT NOT NULL,
    sent        REAL NOT NULL,
    PRIMARY KEY (instance, snapshot, peer)
);
CREATE TABLE IF NOT EXISTS snapshot_peers (
    name    TEXT PRIMARY KEY,
    url     TEXT NOT NULL,
    token   TEXT,
    ca      TEXT
);
""", """
ALTER TABLE snapshot_policies ADD COLUMN config_policy TEXT;
CREATE TABLE IF NOT EXISTS snapshot_consistency (
    instance    TEXT NOT NULL,
    snapshot    TEXT NOT NULL,
    how         TEXT NOT NULL,
    PRIMARY KEY (instance, snapshot)
);
""", """
ALTER TABLE snapshot_peers ADD COLUMN fingerprint TEXT;
"""))


@dataclass(frozen=True)
class PeerRecord:
    """A homecloud host snapshots are sent to: its front door (``https://HOST``, with an
    admin's token) or, on the same machine, its agent's socket (``unix:/PATH``)."""

    name: str
    url: str
    token: str | None = None
    ca: str | None = None  # a CA file that vouches for its door's certificate
    fingerprint: str | None = None  # or that certificate's SHA-256, pinned


@dataclass(frozen=True)
class Policy:
    instance: str
    keep: str  # as parse_keep reads it
    every: int  # seconds
    replicate_to: str | None = None
    last_run: float | None = None
    last_snapshot: str | None = None
    last_error: str | None = None
    # The named policy of config.yaml this is (None: set with `hc policy set`).
    config_policy: str | None = None
    # Set with `hc policy set` on an instance config.yaml gives this named policy: the one set
    # wins until `hc policy rm`. Not stored: config.yaml says it.
    overrides: str | None = None
    source: str = "cli"  # "config": config.yaml's (then config_policy names it)


class SnapshotRecords:
    def __init__(self, store: Store) -> None:
        store.require(SCHEMA)
        self.store = store

    # -- policies -------------------------------------------------------------------------------
    def put_policy(self, policy: Policy) -> None:
        self.store.execute(
            "INSERT INTO snapshot_policies (instance, keep, every, replicate_to, config_policy) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (instance) DO UPDATE SET keep = excluded.keep, "
            "every = excluded.every, replicate_to = excluded.replicate_to, "
            "config_policy = excluded.config_policy",
            (policy.instance, policy.keep, policy.every, policy.replicate_to,
             policy.config_policy))

    def policy(self, instance: str) -> Policy | None:
        rows = self.store.query("SELECT * FROM snapshot_policies WHERE instance = ?",
                                (instance,))
        return _policy(rows[0]) if rows else None

    def policies(self) -> list[Policy]:
        return [_policy(row) for row in
                self.store.query("SELECT * FROM snapshot_policies ORDER BY instance")]

    def ran(self, instance: str, when: float, snapshot: str | None, error: str | None) -> None:
        self.store.execute(
            "UPDATE snapshot_policies SET last_run = ?, last_snapshot = coalesce(?, "
            "last_snapshot), last_error = ? WHERE instance = ?",
            (when, snapshot, error, instance))

    def delete_policy(self, instance: str) -> None:
        self.store.execute("DELETE FROM snapshot_policies WHERE instance = ?", (instance,))

    # -- peers ----------------------------------------------------------------------------------
    def put_peer(self, peer: PeerRecord) -> None:
        self.store.execute("INSERT OR REPLACE INTO snapshot_peers (name, url, token, ca, "
                           "fingerprint) VALUES (?, ?, ?, ?, ?)",
                           (peer.name, peer.url, peer.token, peer.ca, peer.fingerprint))

    def peer(self, name: str) -> PeerRecord | None:
        rows = self.store.query("SELECT * FROM snapshot_peers WHERE name = ?", (name,))
        return PeerRecord(*rows[0]) if rows else None

    def peers(self) -> list[PeerRecord]:
        return [PeerRecord(*row) for row in
                self.store.query("SELECT * FROM snapshot_peers ORDER BY name")]

    def delete_peer(self, name: str) -> None:
        self.store.execute("DELETE FROM snapshot_peers WHERE name = ?", (name,))

    # -- how each snapshot was made consistent --------------------------------------------------
    def made(self, instance: str, snapshot: str, how: str) -> None:
        self.store.execute("INSERT OR REPLACE INTO snapshot_consistency (instance, snapshot, "
                           "how) VALUES (?, ?, ?)", (instance, snapshot, how))

    def consistency(self, instance: str) -> dict[str, str]:
        return {row["snapshot"]: row["how"] for row in self.store.query(
            "SELECT snapshot, how FROM snapshot_consistency WHERE instance = ?", (instance,))}

    def forget_made(self, instance: str, snapshot: str | None = None) -> None:
        if snapshot is None:
            self.store.execute("DELETE FROM snapshot_consistency WHERE instance = ?",
                               (instance,))
        else:
            self.store.execute("DELETE FROM snapshot_consistency WHERE instance = ? AND "
                               "snapshot = ?", (instance, snapshot))

    # -- replicas -------------------------------------------------------------------------------
    def sent(self, instance: str, snapshot: str, peer: str, when: float) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO snapshot_replicas (instance, snapshot, peer, sent) "
            "VALUES (?, ?, ?, ?)", (instance, snapshot, peer, when))

    def replicas(self, instance: str) -> dict[str, set[str]]:
        """Per snapshot of ``instance``: the peers it was sent to."""
        out: dict[str, set[str]] = {}
        for row in self.store.query("SELECT snapshot, peer FROM snapshot_replicas "
                                    "WHERE instance = ?", (instance,)):
            out.setdefault(row["snapshot"], set()).add(row["peer"])
        return out

    def forget_replicas(self, instance: str, snapshot: str | None = None) -> None:
        if snapshot is None:
            self.store.execute("DELETE FROM snapshot_replicas WHERE instance = ?", (instance,))
        else:
            self.store.execute("DELETE FROM snapshot_replicas WHERE instance = ? AND "
                               "snapshot = ?", (instance, snapshot))


def _policy(row: sqlite3.Row) -> Policy:
    return Policy(instance=row["instance"], keep=row["keep"], every=row["every"],
                  replicate_to=row["replicate_to"], last_run=row["last_run"],
                  last_snapshot=row["last_snapshot"], last_error=row["last_error"],
                  config_policy=row["config_policy"],
                  source="config" if row["config_policy"] else "cli")
