"""The microVM's qemu command line and the names derived for it (pure logic)."""

from __future__ import annotations

from pathlib import Path

from homecloud.images.vmimage import READY_PORT
from homecloud.instances.drivers.qemu import (
    GUEST_AGENT_PORT,
    MicroVmConfig,
    guest_mac,
    memory_mib,
    microvm_argv,
    vcpus,
    vm_sockets,
)


def config(**changes: object) -> MicroVmConfig:
    values: dict[str, object] = dict(
        name="vm1", kernel=Path("/pool/instances/vm1/boot/vmlinuz"),
        initrd=Path("/pool/instances/vm1/boot/initrd.img"), cmdline="console=ttyS0 quiet",
        disk=Path("/pool/instances/vm1/volume.raw"), sockets=vm_sockets("vm1"), kvm=False,
        tap="hctabc")
    values.update(changes)
    return MicroVmConfig(**values)  # type: ignore[arg-type]


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, item in enumerate(argv) if item == flag]


def test_microvm_boots_the_kernel_directly_from_the_fork() -> None:
    argv = microvm_argv(config())
    assert argv[0] == "qemu-system-x86_64"
    assert option(argv, "-M") == ["microvm,acpi=on"]
    assert option(argv, "-kernel") == ["/pool/instances/vm1/boot/vmlinuz"]
    assert option(argv, "-initrd") == ["/pool/instances/vm1/boot/initrd.img"]
    assert option(argv, "-append") == ["console=ttyS0 quiet"]
    assert "id=root,file=/pool/instances/vm1/volume.raw,format=raw,if=none,discard=unmap" in (
        option(argv, "-drive"))
    assert "virtio-blk-device,drive=root" in option(argv, "-device")
    assert "-initrd" not in microvm_argv(config(initrd=None))


def test_tcg_without_kvm_and_kvm_with_it() -> None:
    tcg, kvm = microvm_argv(config()), microvm_argv(config(kvm=True))
    assert option(tcg, "-accel") == ["tcg"] and "-cpu" not in tcg
    assert option(kvm, "-accel") == ["kvm"] and option(kvm, "-cpu") == ["host"]
    assert any("vhost=off" in n for n in option(tcg, "-netdev"))
    assert any("vhost=on" in n for n in option(kvm, "-netdev"))


def test_ports_and_sockets_live_in_the_runtime_directory() -> None:
    argv = microvm_argv(config())
    devices = option(argv, "-device")
    assert f"virtserialport,chardev=ready,name={READY_PORT}" in devices
    assert f"virtserialport,chardev=agent,name={GUEST_AGENT_PORT}" in devices
    assert "virtconsole,chardev=console" in devices
    chardevs = option(argv, "-chardev")
    for name in ("ready", "agent", "console", "qmp"):
        assert f"socket,id={name},path=/run/homecloud/vms/vm1/{name}.sock,server=on,wait=off" in (
            chardevs)
    assert option(argv, "-mon") == ["chardev=qmp,mode=control"]
    assert option(argv, "-serial") == ["chardev:serial"]  # ttyS0: stdout, the journal


def test_nic_is_the_tap_with_a_mac_from_the_name() -> None:
    argv = microvm_argv(config())
    assert option(argv, "-netdev") == ["tap,id=net,ifname=hctabc,script=no,downscript=no,"
                                       "vhost=off"]
    assert f"virtio-net-device,netdev=net,mac={guest_mac('vm1')}" in option(argv, "-device")
    assert "-netdev" not in microvm_argv(config(tap=None))


def test_mac_is_stable_unicast_and_locally_administered() -> None:
    mac = guest_mac("vm1")
    assert mac == guest_mac("vm1") != guest_mac("vm2")
    first = int(mac.split(":")[0], 16)
    assert first & 0x01 == 0 and first & 0x02 == 0x02
    assert len(mac.split(":")) == 6


def test_cpus_round_up_and_memory_in_mib() -> None:
    assert vcpus(None) == 2 and vcpus(1) == 1 and vcpus(1.5) == 2 and vcpus(0.1) == 1
    assert memory_mib(None) == 512 and memory_mib(256 << 20) == 256
    argv = microvm_argv(config(cpus=3, memory=1 << 30))
    assert option(argv, "-smp") == ["3"] and option(argv, "-m") == ["1024M"]


def test_socket_paths_fit_a_unix_address_for_the_longest_name() -> None:
    sockets = vm_sockets("a" * 63)
    for path in (sockets.qmp, sockets.ready, sockets.agent, sockets.console):
        assert len(str(path)) < 108


def test_tcg_guests_are_told_the_tsc_rate() -> None:
    assert option(microvm_argv(config(tsc_khz=2445430)), "-append") == [
        "console=ttyS0 quiet tsc_early_khz=2445430"]
    assert option(microvm_argv(config(tsc_khz=2445430, kvm=True)), "-append") == [
        "console=ttyS0 quiet"]
    assert option(microvm_argv(config()), "-append") == ["console=ttyS0 quiet"]
