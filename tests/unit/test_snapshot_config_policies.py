"""Named snapshot policies in config.yaml: parsed and checked at load with one-line errors,
written as policies (and timers) when the agent starts, overridden by `hc policy set` until
`hc policy rm`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from homecloud.config import SnapshotsConfig, parse_config
from homecloud.errors import NotFound, UserError
from homecloud.snapshots.policies import PolicyService, configured_policies
from homecloud.snapshots.records import SnapshotRecords
from homecloud.state.store import Store

NIGHTLY = {"keep": "daily=7 weekly=4", "every": "1d", "replicate-to": "beta"}


def snapshots_section(**section: Any) -> SnapshotsConfig:
    return parse_config({"snapshots": section}).snapshots


def test_named_policies_and_the_instances_that_follow_them() -> None:
    config = snapshots_section(policies={"nightly": NIGHTLY, "often": {"keep": "minutely=5"}},
                               instances={"web": "nightly", "db": "often"})
    policies = configured_policies(config)
    assert policies["web"].keep == "daily=7 weekly=4" and policies["web"].every == 86400
    assert policies["web"].replicate_to == "beta"
    assert policies["web"].source == "config" and policies["web"].config_policy == "nightly"
    assert policies["db"].every == 60  # the finest tier's period when `every` is not given
    assert config.policy_of("db") is not None and config.policy_of("nobody") is None


def test_no_section_means_no_policies() -> None:
    assert configured_policies(parse_config({}).snapshots) == {}


@pytest.mark.parametrize(("section", "message"), [
    ({"instances": {"web": "nightly"}},
     "config: snapshots: instances: web: no policy named 'nightly' under snapshots: policies "
     "(there: none)"),
    ({"policies": {"nightly": {"every": "1d"}}},
     "config: snapshots: policies: nightly: 'keep' is missing (e.g. keep: \"daily=7 weekly=4\")"),
    ({"policies": {"nightly": {"keep": 7}}},
     "config: snapshots: policies: nightly: keep must be a string, not 7"),
    ({"policies": {"nightly": {"keep": "daily=7", "when": "1d"}}},
     "config: snapshots: policies: nightly: unknown setting 'when' (known: keep, every, "
     "replicate_to)"),
    ({"policies": ["nightly"]},
     "config: snapshots: policies: expected a mapping of policy names to {keep, every, "
     "replicate_to}"),
    ({"policies": {"a/b": {"keep": "daily=1"}}},
     "config: snapshots: policies: policy name 'a/b' is invalid: use letters, digits, '.', "
     "'_' and '-', starting with a letter or digit"),
    ({"policies": {"n": {"keep": "daily=1"}}, "instances": {"Web": "n"}},
     "config: snapshots: instances: instance name 'Web' is invalid: use lower-case letters, "
     "digits and '-', not starting or ending with '-'"),
    ({"policies": {"n": {"keep": "daily=1"}}, "instances": ["web"]},
     "config: snapshots: instances: expected a mapping of instance names to policy names"),
    ({"timers": {}}, "config: snapshots: unknown setting 'timers' (known: policies, instances)"),
])
def test_a_bad_section_is_refused_in_one_line(section: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_config({"snapshots": section})
    assert info.value.message == message


@pytest.mark.parametrize(("policy", "message"), [
    ({"keep": "daily=-1"}, "snapshots: policies: bad: keep: daily=-1 is not a count"),
    ({"keep": "fortnightly=2"}, "snapshots: policies: bad: "),
    ({"keep": "daily=7", "every": "30s"},
     "snapshots: policies: bad: every 30s: policies snapshot at most once a minute"),
    ({"keep": "daily=7", "every": "7m"}, "snapshots: policies: bad: every 7m: use a number"),
])
def test_bad_counts_or_intervals_are_refused_naming_the_policy(policy: dict[str, str],
                                                               message: str) -> None:
    config = snapshots_section(policies={"bad": policy}, instances={"web": "bad"})
    with pytest.raises(UserError) as info:
        configured_policies(config, "/etc/homecloud/config.yaml")
    assert info.value.message.startswith(f"/etc/homecloud/config.yaml: {message}")
    assert "\n" not in info.value.message


# -- the service: config.yaml's policies beside `hc policy set`'s ---------------------------------
@dataclass
class FakeTimers:
    """Records which timers exist; systemd itself is exercised by the system tests."""

    on: dict[str, int] = field(default_factory=dict)

    def install(self, instance: str, every: int) -> None:
        self.on[instance] = every

    def remove(self, instance: str) -> None:
        self.on.pop(instance, None)

    def installed(self) -> set[str]:
        return set(self.on)


@dataclass
class FakeInstance:
    name: str


class FakeInstances:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.records = self

    def all(self) -> list[FakeInstance]:
        return [FakeInstance(n) for n in self.names]

    def instance(self, name: str) -> FakeInstance:
        if name not in self.names:
            raise NotFound(f"no instance named {name!r}; see `hc ls`")
        return FakeInstance(name)


@dataclass
class FakeSnapshots:
    instances: FakeInstances


@pytest.fixture
def service(tmp_path: Path) -> PolicyService:
    config = snapshots_section(policies={"nightly": {"keep": "daily=7", "every": "1d"}},
                               instances={"web": "nightly", "later": "nightly"})
    records = SnapshotRecords(Store(tmp_path / "state.db"))
    return PolicyService(FakeSnapshots(FakeInstances(["web", "db"])),  # type: ignore[arg-type]
                         records, FakeTimers(), None,  # type: ignore[arg-type]
                         configured_policies(config))


def test_config_policies_get_their_timers_at_start(service: PolicyService) -> None:
    changed = service.reconcile()
    assert "applied config.yaml's policy nightly to web" in changed
    # An instance not made yet gets its timer too: its runs say it is missing.
    assert service.timers.installed() == {"web", "later"}
    listed = {p.instance: p for p in service.list()}
    assert listed["web"].source == "config" and listed["web"].config_policy == "nightly"
    assert service.reconcile() == []  # nothing to do the second time


def test_a_run_for_a_missing_instance_keeps_the_config_policy(service: PolicyService) -> None:
    service.reconcile()
    with pytest.raises(NotFound):
        service.run("later")
    [later] = [p for p in service.list() if p.instance == "later"]
    assert later.last_error == "no instance named 'later'; see `hc ls`"
    assert "later" in service.timers.installed()


def test_hc_policy_set_wins_and_rm_brings_config_back(service: PolicyService) -> None:
    service.reconcile()
    set_here = service.set("web", "hourly=24", "1h")
    assert set_here.source == "cli" and set_here.overrides == "nightly"
    assert service.timers.on["web"] == 3600
    assert service.reconcile() == []  # a restart keeps what `hc policy set` said
    assert service.records.policy("web").keep == "hourly=24"  # type: ignore[union-attr]
    back = service.remove("web")
    assert back is not None and back.config_policy == "nightly"
    assert service.timers.on["web"] == 86400
    assert service.records.policy("web").source == "config"  # type: ignore[union-attr]


def test_a_config_policy_cannot_be_removed_with_hc(service: PolicyService) -> None:
    service.reconcile()
    with pytest.raises(UserError) as info:
        service.remove("web")
    assert info.value.message == (
        "the policy of web is 'nightly' from config.yaml (snapshots: instances: web): remove "
        "it there and restart hcd (`systemctl restart hcd`)")
    assert service.records.policy("web") is not None and "web" in service.timers.installed()


def test_a_policy_gone_from_config_goes_at_start(service: PolicyService) -> None:
    service.reconcile()
    service.configured.pop("later")
    assert "removed config.yaml's former policy of later" in service.reconcile()
    assert service.timers.installed() == {"web"}
    assert [p.instance for p in service.list()] == ["web"]
