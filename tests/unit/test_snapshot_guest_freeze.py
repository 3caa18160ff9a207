"""The order of a VM snapshot's freezes (homecloud.snapshots.freezer.guest_frozen): the guest's
file systems frozen through its agent before the snapshot, always thawed after it, also when
the freeze or the snapshot fails. A fake guest agent stands in for qemu-guest-agent; the real
one is reached through the VM drivers."""

from __future__ import annotations

from typing import Any

import pytest

from homecloud.errors import HostError
from homecloud.instances.drivers.qmp import ProtocolError
from homecloud.snapshots.freezer import THAW_ATTEMPTS, guest_frozen


class FakeAgent:
    def __init__(self, fail: dict[str, list[BaseException]] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or {}

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        self.calls.append(command)
        errors = self.fail.get(command)
        if errors:
            raise errors.pop(0)
        return 1


def test_frozen_around_the_body_then_thawed() -> None:
    agent = FakeAgent()
    with guest_frozen(agent, "vm1") as frozen:
        agent.calls.append("snapshot")
    assert frozen is True
    assert agent.calls == ["guest-fsfreeze-freeze", "snapshot", "guest-fsfreeze-thaw"]


def test_no_agent_means_no_guest_freeze() -> None:
    with guest_frozen(None, "vm1") as frozen:
        pass
    assert frozen is False


def test_thawed_when_the_snapshot_fails() -> None:
    agent = FakeAgent()
    with pytest.raises(RuntimeError), guest_frozen(agent, "vm1"):
        raise RuntimeError("the pool is full")
    assert agent.calls == ["guest-fsfreeze-freeze", "guest-fsfreeze-thaw"]


@pytest.mark.parametrize("error", [ProtocolError("fsfreeze is not supported"),
                                   TimeoutError("timed out")])
def test_a_failed_or_timed_out_freeze_is_thawed_and_falls_back(error: BaseException,
                                                              caplog: Any) -> None:
    agent = FakeAgent({"guest-fsfreeze-freeze": [error]})
    with guest_frozen(agent, "vm1") as frozen:
        agent.calls.append("snapshot")
    assert frozen is False
    # A freeze whose answer timed out may have happened in the guest: thawed before the body.
    assert agent.calls == ["guest-fsfreeze-freeze", "guest-fsfreeze-thaw", "snapshot"]
    assert "vm1: the guest's file systems could not be frozen" in caplog.text


def test_a_thaw_that_does_not_answer_is_asked_again() -> None:
    agent = FakeAgent({"guest-fsfreeze-thaw": [TimeoutError("timed out")]})
    with guest_frozen(agent, "vm1"):
        pass
    assert agent.calls == ["guest-fsfreeze-freeze", "guest-fsfreeze-thaw",
                           "guest-fsfreeze-thaw"]


def test_a_thaw_that_never_succeeds_is_an_error_saying_what_to_do() -> None:
    agent = FakeAgent({"guest-fsfreeze-thaw": [TimeoutError("timed out")] * THAW_ATTEMPTS})
    with pytest.raises(HostError) as info, guest_frozen(agent, "vm1"):
        pass
    assert info.value.message == (
        "VM vm1's file systems may still be frozen: its guest agent did not thaw them (timed "
        "out); run `hc exec vm1 -- fsfreeze -u /` or restart it with `hc restart vm1`")
    assert agent.calls.count("guest-fsfreeze-thaw") == THAW_ATTEMPTS
