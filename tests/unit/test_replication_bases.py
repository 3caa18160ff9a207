"""Which snapshot each peer needs as the base of its next incremental stream
(PolicyService.replication_bases): the last one made of those it holds, even when the clock
went back between them or they share a second. The pool is a stand-in listing snapshots in
the order they were made, as every storage driver does; the records are a real store."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from homecloud.snapshots.policies import PolicyService
from homecloud.snapshots.records import SnapshotRecords
from homecloud.state.store import Store
from homecloud.storage.base import Snapshot

T = 1_796_157_708.0


def service(tmp_path: Path, made: list[tuple[str, float]]) -> PolicyService:
    listed = [Snapshot("instances/web", name, None, created, order)
              for order, (name, created) in enumerate(made)]
    snapshots = SimpleNamespace(
        pool=SimpleNamespace(snapshots=lambda dataset: listed),
        instances=SimpleNamespace(instance=lambda name: SimpleNamespace(
            dataset="instances/web")))
    records = SnapshotRecords(Store(tmp_path / "state.db"))
    return PolicyService(cast(Any, snapshots), records, cast(Any, None))


def test_the_base_is_the_last_made_when_the_clock_went_back(tmp_path: Path) -> None:
    policies = service(tmp_path, [("d2", T), ("auto-1", T - 3600)])  # clock set back an hour
    for name in ("d2", "auto-1"):
        policies.records.sent("web", name, "beta", T)
    assert policies.replication_bases("web") == {"auto-1"}


def test_the_base_of_one_second_is_the_last_made_whatever_its_name(tmp_path: Path) -> None:
    policies = service(tmp_path, [("raw", T), ("auto-1", T)])
    for name in ("raw", "auto-1"):
        policies.records.sent("web", name, "beta", T)
    assert policies.replication_bases("web") == {"auto-1"}


def test_each_peer_keeps_its_own_base_and_gone_snapshots_do_not_count(tmp_path: Path) -> None:
    policies = service(tmp_path, [("a", T), ("b", T + 60), ("c", T + 120)])
    policies.records.sent("web", "a", "beta", T)
    policies.records.sent("web", "b", "small", T)
    policies.records.sent("web", "pruned-long-ago", "beta", T)
    assert policies.replication_bases("web") == {"a", "b"}
