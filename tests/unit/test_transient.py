"""Rendering transient services to D-Bus properties (no systemd needed)."""

from __future__ import annotations

import signal

import pytest

from homecloud.instances.drivers.nspawn import nspawn_service
from homecloud.systemd.transient import (
    TransientService,
    marshal_properties,
    render_properties,
)


def props(svc: TransientService) -> dict[str, tuple[str, object]]:
    return {name: (sig, value) for name, sig, value in render_properties(svc)}


def boot_service(**kw: object) -> TransientService:
    args: dict[str, object] = dict(description="homecloud container web", slice="hc.slice",
                                   boot=True, cpus=1.5, memory_max=512 << 20, timeout_stop=30.0,
                                   restart="no")
    args.update(kw)
    return nspawn_service("hc-web.service", ["systemd-nspawn", "-b"], **args)  # type: ignore


def test_boot_container_properties_match_systemd_nspawn_at_service() -> None:
    p = props(boot_service())
    assert p["Type"] == ("s", "notify")
    assert p["ExecStart"] == ("a(sasb)", [("systemd-nspawn", ["systemd-nspawn", "-b"], False)])
    assert p["Slice"] == ("s", "hc.slice")
    assert p["KillMode"] == ("s", "mixed")
    assert p["KillSignal"] == ("i", int(signal.SIGTERM))
    assert p["Delegate"] == ("b", True)
    assert p["CPUQuotaPerSecUSec"] == ("t", 1_500_000)
    assert p["MemoryMax"] == ("t", 512 << 20)
    assert p["TimeoutStopUSec"] == ("t", 30_000_000)
    assert p["SuccessExitStatus"] == ("(aiai)", ([133], []))
    assert p["RestartForceExitStatus"] == ("(aiai)", ([133], []))
    assert p["TasksMax"] == ("t", 16384)
    assert p["DevicePolicy"] == ("s", "closed")
    assert p["DeviceAllow"] == ("a(ss)", [("/dev/net/tun", "rwm"), ("char-pts", "rw")])
    assert p["Restart"] == ("s", "no")
    assert "RemainAfterExit" not in p


def test_command_container_is_type_exec_and_remains_after_exit() -> None:
    p = props(boot_service(boot=False, cpus=None, memory_max=None))
    assert p["Type"] == ("s", "exec")
    assert p["RemainAfterExit"] == ("b", True)
    assert "CPUQuotaPerSecUSec" not in p and "MemoryMax" not in p
    assert "RestartForceExitStatus" not in p
    always = props(boot_service(boot=False, restart="always"))
    assert always["Restart"] == ("s", "always") and "RemainAfterExit" not in always
    assert always["RestartUSec"] == ("t", 1_000_000)


def test_environment_and_extra_properties() -> None:
    svc = TransientService("x.service", ["/bin/true"], environment={"A": "1"},
                           extra=[("IOWeight", "t", 50)], accounting=False)
    p = props(svc)
    assert p["Environment"] == ("as", ["A=1"])
    assert p["IOWeight"] == ("t", 50)
    assert p["Description"] == ("s", "x.service")
    assert "CPUAccounting" not in p


def test_a_networked_container_runs_in_its_namespace() -> None:
    assert props(boot_service(netns_path="/run/netns/hc-web"))["NetworkNamespacePath"] == (
        "s", "/run/netns/hc-web")
    assert "NetworkNamespacePath" not in props(boot_service())


def test_empty_argv_is_refused() -> None:
    with pytest.raises(ValueError, match="empty command"):
        render_properties(TransientService("x.service", []))


def test_marshalling_accepts_every_rendered_signature() -> None:
    pytest.importorskip("pystemd.dbuslib")
    args = marshal_properties(render_properties(boot_service()))
    assert args[0] == (ord("a"), b"(sv)") and args[-1] == (-1, None)
    assert (ord("s"), b"DeviceAllow") in args
