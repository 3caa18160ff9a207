"""Snapshot references and names (homecloud.snapshots.naming)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from homecloud.errors import UserError
from homecloud.instances.context import Origin
from homecloud.snapshots.naming import SnapshotRef, parse_ref, stamped_name


def test_a_reference_names_an_instance_and_its_snapshot() -> None:
    assert parse_ref("web@before-upgrade") == SnapshotRef("web", "before-upgrade")
    assert str(parse_ref("web@20261201T143000Z")) == "web@20261201T143000Z"


@pytest.mark.parametrize(("text", "message"), [
    ("web", "write INSTANCE@SNAPSHOT"),
    ("web@", "write INSTANCE@SNAPSHOT"),
    ("@snap", "write INSTANCE@SNAPSHOT"),
    ("Web@snap", "instance name"),
    ("web@../x", "invalid snapshot name"),
    ("web@.hidden", "invalid snapshot name"),
    ("web@a b", "invalid snapshot name"),
    ("web@a@b", "invalid snapshot name"),
    ("web@" + "x" * 65, "invalid snapshot name"),
])
def test_bad_references_are_refused(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_ref(text)


def test_default_names_are_the_creation_time_in_utc() -> None:
    when = datetime(2026, 3, 29, 1, 30, 5, tzinfo=UTC).timestamp()
    assert stamped_name(when) == "20260329T013005Z"
    assert stamped_name(when, "auto-") == "auto-20260329T013005Z"


def test_a_clone_origin_says_where_each_dataset_comes_from() -> None:
    origin = Origin(forks=(("volumes/web/data", "s1", "volumes/web2/data"),
                           ("instances/web", "s1", "instances/web2")))
    assert origin.source_of("instances/web2") == ("instances/web", "s1")
    assert origin.source_of("volumes/web2/data") == ("volumes/web/data", "s1")
    assert origin.source_of("instances/other") is None
