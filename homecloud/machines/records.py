"""The machines' share of the state database.

One row per bare-metal machine (its instance row, kind "machine", holds the name, image and
phase): its MAC, disk, keys, workflow, where the installer is (each step's state), and the
digest of the token its installer holds — never the token itself. Beside it: the installer's
log lines, the MACs that asked to boot and are not known, and the provisioning settings.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from homecloud.errors import Conflict, NotFound
from homecloud.machines.progress import WAITING, StepState
from homecloud.machines.spec import MachineSpec
from homecloud.state.store import Schema, Store

SCHEMA = Schema("machines", ("""
CREATE TABLE machines (
    name            TEXT PRIMARY KEY,
    mac             TEXT NOT NULL UNIQUE,
    spec            TEXT NOT NULL,              -- JSON of MachineSpec
    state           TEXT NOT NULL,              -- progress.MACHINE_STATES
    steps           TEXT NOT NULL DEFAULT '[]', -- JSON list of StepState
    token_digest    TEXT NOT NULL DEFAULT '',
    network         TEXT NOT NULL DEFAULT '{}',  -- JSON: what the installer configures
    boots           INTEGER NOT NULL DEFAULT 0,
    last_boot       REAL,
    updated         REAL NOT NULL
);
CREATE TABLE machine_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    time        REAL NOT NULL,
    step        TEXT NOT NULL,
    line        TEXT NOT NULL
);
CREATE INDEX machine_log_name ON machine_log (name, seq);
CREATE TABLE machine_unknown_macs (
    mac         TEXT PRIMARY KEY,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    count       INTEGER NOT NULL
);
CREATE TABLE provision_settings (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    settings    TEXT NOT NULL
);
""",))
MAX_LOG_LINES = 200  # per event: the installer sends its output in pieces
MAX_LINE = 1000


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class MachineRecord:
    spec: MachineSpec
    state: str = WAITING
    steps: tuple[StepState, ...] = ()
    token_digest: str = ""
    network: Mapping[str, Any] = field(default_factory=dict)
    boots: int = 0
    last_boot: float | None = None
    updated: float = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    def token_matches(self, token: str) -> bool:
        return bool(self.token_digest) and hmac.compare_digest(self.token_digest,
                                                               token_digest(token))


@dataclass(frozen=True)
class LogLine:
    seq: int
    time: float
    step: str
    line: str


@dataclass(frozen=True)
class UnknownMac:
    mac: str
    first_seen: float
    last_seen: float
    count: int


class MachineRecords:
    def __init__(self, store: Store) -> None:
        store.require(SCHEMA)
        self.store = store

    # -- machines --------------------------------------------------------------------------------
    def insert(self, spec: MachineSpec) -> None:
        try:
            self.store.execute(
                "INSERT INTO machines (name, mac, spec, state, updated) VALUES (?, ?, ?, ?, ?)",
                (spec.name, spec.mac, json.dumps(spec.to_json()), WAITING, time.time()))
        except sqlite3.IntegrityError as exc:
            owner = self.by_mac(spec.mac)
            if owner is not None:
                raise Conflict(f"MAC address {spec.mac} is already machine {owner.name!r}; "
                               f"remove it first with `hc machine rm {owner.name}`") from exc
            raise Conflict(f"machine {spec.name!r} already exists; pick another name") from exc
        self.store.execute("DELETE FROM machine_unknown_macs WHERE mac = ?", (spec.mac,))

    def delete(self, name: str) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM machines WHERE name = ?", (name,))
            db.execute("DELETE FROM machine_log WHERE name = ?", (name,))

    def get(self, name: str) -> MachineRecord | None:
        rows = self.store.query("SELECT * FROM machines WHERE name = ?", (name,))
        return _record(rows[0]) if rows else None

    def require(self, name: str) -> MachineRecord:
        record = self.get(name)
        if record is None:
            raise NotFound(f"no machine named {name!r}; see `hc machine ls`")
        return record

    def by_mac(self, mac: str) -> MachineRecord | None:
        rows = self.store.query("SELECT * FROM machines WHERE mac = ?", (mac,))
        return _record(rows[0]) if rows else None

    def all(self) -> list[MachineRecord]:
        return [_record(row) for row in self.store.query("SELECT * FROM machines ORDER BY name")]

    def new_token(self, name: str) -> str:
        """A fresh token for ``name``'s installer (the one before it stops working): only
        its digest is kept. Counts the boot."""
        token = secrets.token_urlsafe(32)
        self.store.execute(
            "UPDATE machines SET token_digest = ?, boots = boots + 1, last_boot = ? "
            "WHERE name = ?", (token_digest(token), time.time(), name))
        return token

    def set_network(self, name: str, network: Mapping[str, Any]) -> None:
        self.store.execute("UPDATE machines SET network = ? WHERE name = ?",
                           (json.dumps(dict(network)), name))

    def set_progress(self, name: str, state: str, steps: tuple[StepState, ...]) -> None:
        self.store.execute(
            "UPDATE machines SET state = ?, steps = ?, updated = ? WHERE name = ?",
            (state, json.dumps([s.to_json() for s in steps]), time.time(), name))

    def reset(self, name: str) -> None:
        """Back to waiting for a network boot, the last install's steps and log forgotten."""
        with self.store.transaction() as db:
            db.execute("UPDATE machines SET state = ?, steps = '[]', token_digest = '', "
                       "updated = ? WHERE name = ?", (WAITING, time.time(), name))
            db.execute("DELETE FROM machine_log WHERE name = ?", (name,))

    # -- the installer's log ---------------------------------------------------------------------
    def append_log(self, name: str, step: str, lines: list[str]) -> None:
        now = time.time()
        with self.store.transaction() as db:
            db.executemany("INSERT INTO machine_log (name, time, step, line) VALUES (?, ?, ?, ?)",
                           [(name, now, step, line[:MAX_LINE])
                            for line in lines[:MAX_LOG_LINES]])

    def log(self, name: str, after: int = 0, limit: int | None = None) -> list[LogLine]:
        """``name``'s log lines after sequence number ``after``; with ``limit``, the last
        ``limit`` of them."""
        if limit is None:
            rows = self.store.query("SELECT seq, time, step, line FROM machine_log "
                                    "WHERE name = ? AND seq > ? ORDER BY seq", (name, after))
        else:
            rows = self.store.query(
                "SELECT * FROM (SELECT seq, time, step, line FROM machine_log WHERE name = ? "
                "AND seq > ? ORDER BY seq DESC LIMIT ?) ORDER BY seq", (name, after, limit))
        return [LogLine(*row) for row in rows]

    # -- MACs that asked and are not known --------------------------------------------------------
    def saw_unknown(self, mac: str) -> None:
        now = time.time()
        self.store.execute(
            "INSERT INTO machine_unknown_macs VALUES (?, ?, ?, 1) ON CONFLICT (mac) DO UPDATE "
            "SET last_seen = excluded.last_seen, count = count + 1", (mac, now, now))

    def unknown(self) -> list[UnknownMac]:
        return [UnknownMac(*row) for row in self.store.query(
            "SELECT * FROM machine_unknown_macs ORDER BY last_seen DESC")]

    # -- provisioning settings -------------------------------------------------------------------
    def settings(self) -> dict[str, Any] | None:
        rows = self.store.query("SELECT settings FROM provision_settings WHERE id = 1")
        return json.loads(rows[0][0]) if rows else None

    def put_settings(self, settings: dict[str, Any] | None) -> None:
        if settings is None:
            self.store.execute("DELETE FROM provision_settings WHERE id = 1")
        else:
            self.store.execute("INSERT OR REPLACE INTO provision_settings VALUES (1, ?)",
                               (json.dumps(settings),))


def _record(row: sqlite3.Row) -> MachineRecord:
    return MachineRecord(spec=MachineSpec.from_json(json.loads(row["spec"])),
                         state=row["state"],
                         steps=tuple(StepState.from_json(s) for s in json.loads(row["steps"])),
                         token_digest=row["token_digest"],
                         network=json.loads(row["network"]), boots=row["boots"],
                         last_boot=row["last_boot"], updated=row["updated"])
