"""The instances table: one row per instance the user asked for.

Rows are written first with phase 'creating' and marked 'ready' last, so after a crash the
reconcile pass can tell half-made instances (removed) from finished ones (adopted, restarted if
asked); 'removing' marks one whose removal a crash may have interrupted.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass

from homecloud.errors import Conflict, NotFound
from homecloud.images.catalog import SCHEMA as IMAGES_SCHEMA
from homecloud.instances.spec import InstanceSpec
from homecloud.state.store import Schema, Store

INSTANCE_PREFIX = "instances"
SCHEMA = Schema("instances", (
    """
    CREATE TABLE instances (
        name        TEXT PRIMARY KEY,
        image       TEXT NOT NULL REFERENCES images(name),
        kind        TEXT NOT NULL,       -- 'container' or 'vm'
        spec        TEXT NOT NULL,       -- JSON of what the user asked for
        created     REAL NOT NULL
    );
    """,
    # Creation is crash-consistent (the phases above). machine_id is the guest's
    # /etc/machine-id (nspawn --uuid=, journal directory).
    """
    ALTER TABLE instances ADD COLUMN phase TEXT NOT NULL DEFAULT 'ready';
    ALTER TABLE instances ADD COLUMN machine_id TEXT NOT NULL DEFAULT '';
    """,
    # A kind that is made from no image (a lambda, from its code) has none: image may be NULL.
    # SQLite changes a column's constraint only by copying the table.
    """
    CREATE TABLE instances_new (
        name        TEXT PRIMARY KEY,
        image       TEXT REFERENCES images(name),  -- NULL: its kind uses no image
        kind        TEXT NOT NULL,
        spec        TEXT NOT NULL,       -- JSON of what the user asked for
        created     REAL NOT NULL,
        phase       TEXT NOT NULL DEFAULT 'ready',
        machine_id  TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO instances_new (name, image, kind, spec, created, phase, machine_id)
        SELECT name, image, kind, spec, created, phase, machine_id FROM instances;
    DROP TABLE instances;
    ALTER TABLE instances_new RENAME TO instances;
    """,
))


def instance_dataset(name: str) -> str:
    return f"{INSTANCE_PREFIX}/{name}"


def unit_name(name: str) -> str:
    """Every instance, whatever its kind, runs as hc-NAME.service."""
    return f"hc-{name}.service"


@dataclass(frozen=True)
class Instance:
    """One row: what the user asked for and what homecloud chose for it."""

    spec: InstanceSpec
    machine_id: str
    phase: str = "creating"
    created: float = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def dataset(self) -> str:
        return instance_dataset(self.spec.name)

    @property
    def unit(self) -> str:
        return unit_name(self.spec.name)


class InstanceRecords:
    def __init__(self, store: Store) -> None:
        store.require(IMAGES_SCHEMA)  # rows name their image
        store.require(SCHEMA)
        self.store = store

    def insert(self, instance: Instance) -> None:
        spec = instance.spec
        try:
            self.store.execute(
                "INSERT INTO instances (name, image, kind, spec, created, phase, machine_id) "
                "VALUES (?, ?, ?, ?, ?, 'creating', ?)",
                (spec.name, spec.image or None, spec.kind, json.dumps(spec.to_json()),
                 instance.created or time.time(), instance.machine_id))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY" in str(exc):
                raise Conflict(f"instance {spec.name!r} already exists; pick another --name"
                               ) from exc
            raise NotFound(f"no image named {spec.image!r}; see `hc image ls`") from exc

    def forget_creating(self, name: str) -> None:
        self.store.execute("DELETE FROM instances WHERE name = ? AND phase = ?",
                           (name, "creating"))

    def delete(self, name: str) -> None:
        self.store.execute("DELETE FROM instances WHERE name = ?", (name,))

    def set_spec(self, spec: InstanceSpec) -> None:
        """What the user asks of an instance changed in place (``hc lambda deploy`` again)."""
        self.store.execute("UPDATE instances SET spec = ? WHERE name = ?",
                           (json.dumps(spec.to_json()), spec.name))

    def set_phase(self, name: str, phase: str) -> None:
        self.store.execute("UPDATE instances SET phase = ? WHERE name = ?", (phase, name))

    def get(self, name: str) -> Instance | None:
        rows = self.store.query("SELECT * FROM instances WHERE name = ?", (name,))
        return _instance(rows[0]) if rows else None

    def all(self) -> list[Instance]:
        return [_instance(row) for row in
                self.store.query("SELECT * FROM instances ORDER BY name")]


def _instance(row: sqlite3.Row) -> Instance:
    return Instance(spec=InstanceSpec.from_json(json.loads(row["spec"])),
                    machine_id=row["machine_id"], phase=row["phase"], created=row["created"])
