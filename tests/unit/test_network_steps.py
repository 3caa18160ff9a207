"""The network creation steps: an instance with `--network none` gets none of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from homecloud.config import NetworkConfig
from homecloud.errors import UserError
from homecloud.instances.context import StepContext
from homecloud.instances.network_steps import network_actions
from homecloud.instances.records import Instance
from homecloud.instances.spec import InstanceSpec
from homecloud.network.service import NetworkService
from homecloud.state.store import Store

STEPS = ("lease-address", "make-netns", "publish-name", "apply-firewall")


class Recorder:
    """Stands in for NetworkService: notes every call, makes nothing (an allocation gives
    a placeholder for the addresses)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> str:
            self.calls.append(name)
            return name
        return call


def context(network: str) -> StepContext:
    spec = InstanceSpec(name="web", image="debian", network=network)
    return StepContext(instance=Instance(spec=spec, machine_id="0" * 32))


def run_all(service: Any, ctx: StepContext) -> None:
    for action in STEPS:
        step = network_actions(cast(NetworkService, service))[action]({})
        step.do(ctx)
        step.undo(ctx)


def test_default_runs_every_step_and_none_runs_no_step() -> None:
    networked, alone = Recorder(), Recorder()
    run_all(networked, context("default"))
    run_all(alone, context("none"))
    assert {"allocate", "release", "plumb", "unplumb", "refresh_dns_quietly"} <= set(
        networked.calls)
    assert alone.calls == []


def test_none_needs_no_network_at_all(tmp_path: Path) -> None:
    """An agent whose network cannot be set up still creates `--network none` instances."""
    broken = NetworkService(NetworkConfig(bridge="bad name!"), Store(tmp_path / "state.db"),
                            None, zone_path=tmp_path / "dns.json", host_name=lambda: "alpha")
    assert broken.start() is None
    run_all(broken, context("none"))
    with pytest.raises(UserError, match="bridge name 'bad name!' is invalid"):
        run_all(broken, context("default"))
