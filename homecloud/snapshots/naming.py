"""Snapshot references (``web@before-upgrade``) and the names homecloud gives snapshots."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from homecloud.errors import UserError
from homecloud.names import validate_instance_name

# One path component a dataset's snapshot directory can hold; '.' first would hide it.
_SNAPSHOT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# Names made when the user gives none: the creation time in UTC, sortable as text.
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def validate_snapshot_name(name: str) -> str:
    if not _SNAPSHOT_RE.fullmatch(name):
        raise UserError(f"invalid snapshot name {name!r}: use up to 64 letters, digits, '.', "
                        "'_' and '-', starting with a letter, digit or '_'")
    return name


@dataclass(frozen=True)
class SnapshotRef:
    instance: str
    snapshot: str

    def __str__(self) -> str:
        return f"{self.instance}@{self.snapshot}"


def parse_ref(text: str) -> SnapshotRef:
    """``INSTANCE@SNAPSHOT`` as typed by the user."""
    instance, at, snapshot = text.partition("@")
    if not at or not instance or not snapshot:
        raise UserError(f"{text!r} is not a snapshot: write INSTANCE@SNAPSHOT, e.g. "
                        "web@before-upgrade (see `hc snapshot ls`)")
    validate_instance_name(instance)
    return SnapshotRef(instance, validate_snapshot_name(snapshot))


def stamped_name(when: float, prefix: str = "") -> str:
    """A snapshot name from its creation time (seconds since the epoch, shown in UTC)."""
    return prefix + datetime.fromtimestamp(when, UTC).strftime(STAMP_FORMAT)
