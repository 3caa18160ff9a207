"""VM images in a dev host: `hc image build debian --vm` and `hc image import NAME DISK`.

The image (`hc image build debian --vm --cloud-init`) is built once per session in the session
dev host (tests/conftest.py), for every VM test. Its layout is read without mounting
(blkid, debugfs, sfdisk, mtools), and it is booted once with qemu -M microvm under TCG, by
hand, to READY on its virtio-serial port: the proof the VM drivers rely on. Imports convert
disks made here from the built image; bad disks are refused with one line and leave nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cli_checks import hc_fails

from homecloud.devhost import DevHost, guest_file
from homecloud.images.vmguest import CMDLINE, FILES
from homecloud.images.vmimage import READY_PORT
from homecloud.instances.drivers.microvm import host_tsc_khz

pytestmark = pytest.mark.system

IMAGE = "debian-vm"
POOL = "/var/lib/homecloud/pool"
IMAGES = f"{POOL}/images"
BOOT_TIMEOUT = 180.0  # TCG on a shared 2-core machine: ~20 s quiet, slower under load
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
WORK = "/var/tmp/vm-images"  # inside the dev host


def _require(*programs: str) -> None:
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (see homecloud.host.bootstrap DEBIAN_PACKAGES)")


@pytest.fixture(scope="module")
def vm_image(devhost: DevHost, vm_image_build: Any) -> dict[str, Any]:
    """The session's `debian-vm` image (tests/conftest.py builds it once in the session dev
    host, with cloud-init, for every VM test)."""
    _require("debootstrap", "mkfs.ext4", "sfdisk", "mkfs.vfat", "mcopy", "qemu-img",
             "qemu-system-x86_64", "debugfs")
    [image] = [i for i in devhost.hc("image", "ls", json=True) if i["name"] == IMAGE]
    devhost.run("mkdir", "-p", WORK)
    return image


def _image_file(devhost: DevHost, name: str) -> str:
    return f"{IMAGES}/{IMAGE}/{name}"


def _debugfs(devhost: DevHost, request: str) -> str:
    """What debugfs says of the root file system (opened read-only, not mounted)."""
    return devhost.run("debugfs", "-R", request, _image_file(devhost, "volume.raw")).stdout


def test_layout_and_description(devhost: DevHost, vm_image: dict[str, Any]) -> None:
    assert (vm_image["vm"], vm_image["machines"]) == (True, ["microvm", "q35"])
    assert vm_image["source"] == "build:debian+vm"
    root = guest_file(devhost, vm_image["path"])
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "boot", "boot/esp.raw", "boot/initrd.img", "boot/vmlinuz", "vm.json", "volume.raw"]
    described = json.loads((root / "vm.json").read_text())
    assert {k: v for k, v in described.items() if k != "extra"} == {
        "layout": "homecloud", "cmdline": CMDLINE, "ready_port": READY_PORT,
        "guest_agent": True, "cloud_init": True, "machines": ["microvm", "q35"],
        "firmware": ["direct", "uefi"]}
    assert described["extra"]["release"] == "bookworm"
    volume = os.stat(root / "volume.raw")
    assert volume.st_size == 2 << 30
    assert volume.st_blocks * 512 < volume.st_size // 2  # sparse
    print(f"image: {vm_image['size_bytes'] / 1e6:.0f} MB; volume allocated "
          f"{volume.st_blocks * 512 / 1e6:.0f} MB of {volume.st_size >> 20} MiB")

    probe = devhost.run("blkid", "-p", "-o", "export", _image_file(devhost, "volume.raw")).stdout
    assert {"TYPE=ext4", "LABEL=hc-root"} <= set(probe.splitlines())


def test_root_file_system_is_generic_and_set_up(devhost: DevHost,
                                                vm_image: dict[str, Any]) -> None:
    assert _debugfs(devhost, "cat /etc/fstab") == FILES["etc/fstab"]
    assert _debugfs(devhost, "cat /etc/machine-id") == ""
    ssh = _debugfs(devhost, "ls /etc/ssh")
    assert "sshd_config" in ssh and "ssh_host_" not in ssh  # made at each VM's first boot
    for path in ("/etc/systemd/system/hc-ready.service",
                 "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
                 "/etc/systemd/system/ssh.service.wants/hc-ssh-host-keys.service",
                 "/etc/udev/rules.d/70-homecloud-ready.rules", "/usr/sbin/qemu-ga",
                 "/usr/sbin/sshd", "/usr/lib/systemd/systemd-udevd", "/usr/bin/cloud-init"):
        found = devhost.run("debugfs", "-R", f"stat {path}", _image_file(devhost, "volume.raw"))
        assert "File not found" not in found.stderr, path
    assert "hostname" not in _debugfs(devhost, "ls /etc").split()
    # A locale that needs no locale-gen (the image has no `locales`): cloud-init keeps it.
    assert _debugfs(devhost, "cat /etc/default/locale") == "LANG=C.UTF-8\n"


def test_esp_boots_the_same_kernel(devhost: DevHost, vm_image: dict[str, Any]) -> None:
    esp = _image_file(devhost, "boot/esp.raw")
    table = json.loads(devhost.run("sfdisk", "--json", esp).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    [partition] = table["partitions"]
    assert (partition["type"], partition["start"]) == (ESP_TYPE, 2048)
    fat = f"{esp}@@{2048 * 512}"
    env = {"MTOOLS_SKIP_CHECK": "1"}
    entry = devhost.run("mtype", "-i", fat, "::/loader/entries/homecloud.conf", env=env).stdout
    assert f"options {CMDLINE}\n" in entry and "linux /vmlinuz\n" in entry
    for name, source in (("vmlinuz", "boot/vmlinuz"), ("initrd.img", "boot/initrd.img"),
                         ("EFI/BOOT/BOOTX64.EFI", None)):
        digest = devhost.run("sh", "-c", f'mcopy -i "$0" ::/{name} - | sha256sum',
                             fat, env=env).stdout.split()[0]
        if source is not None:
            expected = devhost.run("sha256sum", _image_file(devhost, source)).stdout.split()[0]
            assert digest == expected, name
        else:
            assert digest != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_image_ls_shows_what_boots_as_a_vm(devhost: DevHost, vm_image: dict[str, Any]) -> None:
    lines = devhost.hc("image", "ls").stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "BOOTS"]
    [row] = [line.split() for line in lines[1:] if line.split()[0] == IMAGE]
    assert row[1] == "vm:microvm,q35"


@pytest.fixture
def qemu_pidfile(devhost: DevHost) -> Iterator[str]:
    pidfile = f"{WORK}/qemu.pid"
    yield pidfile
    devhost.run("sh", "-c", f'test -e {pidfile} && kill "$(cat {pidfile})"; rm -f {pidfile}',
                check=False)


def test_boots_as_a_microvm_to_ready(devhost: DevHost, vm_image: dict[str, Any],
                                     qemu_pidfile: str) -> None:
    """The image's kernel, initrd and cmdline, the volume as virtio-blk (snapshot=on: the image
    stays as it is), READY on the virtio-serial port, all within BOOT_TIMEOUT."""
    ready, console = f"{WORK}/ready.out", f"{WORK}/console.log"
    devhost.run("rm", "-f", ready, console)
    # A TCG guest cannot calibrate its TSC against the PIT on a busy host, and then hangs:
    # it is told the host's rate, as the microVM driver does.
    tsc = host_tsc_khz()
    cmdline = CMDLINE + (f" tsc_early_khz={tsc}" if tsc else "")
    start = time.monotonic()
    devhost.run(
        "qemu-system-x86_64", "-M", "microvm", "-accel", "tcg", "-m", "512", "-smp", "2",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-daemonize", "-pidfile", qemu_pidfile, "-serial", f"file:{console}",
        "-kernel", _image_file(devhost, "boot/vmlinuz"),
        "-initrd", _image_file(devhost, "boot/initrd.img"), "-append", cmdline,
        "-drive", f"id=root,file={_image_file(devhost, 'volume.raw')},format=raw,if=none,"
                  "snapshot=on",
        "-device", "virtio-blk-device,drive=root", "-device", "virtio-serial-device",
        "-chardev", f"file,id=ready,path={ready}",
        "-device", f"virtserialport,chardev=ready,name={READY_PORT}")
    out = guest_file(devhost, ready)
    while time.monotonic() - start < BOOT_TIMEOUT:
        if out.exists() and b"READY=1\n" in out.read_bytes():
            break
        time.sleep(0.2)
    else:
        tail = guest_file(devhost, console).read_text(errors="replace").splitlines()[-15:]
        pytest.fail(f"no READY=1 within {BOOT_TIMEOUT:.0f} s; console:\n" + "\n".join(tail))
    print(f"microvm (TCG, 2 vCPUs, 512 MiB) to READY: {time.monotonic() - start:.1f} s")
    assert out.read_bytes() == b"READY=1\n"  # written once


# -- import -----------------------------------------------------------------------------------

def _partials(devhost: DevHost) -> list[str]:
    return devhost.run("find", IMAGES, "-mindepth", "1", "-maxdepth", "1",
                       "-name", ".partial-*").stdout.split()


def test_qcow2_and_raw_disks_import(devhost: DevHost, vm_image: dict[str, Any]) -> None:
    qcow2 = f"{WORK}/disk.qcow2"
    devhost.run("qemu-img", "convert", "-f", "raw", "-O", "qcow2",
                _image_file(devhost, "volume.raw"), qcow2)
    try:
        image = devhost.hc("image", "import", "vmq", qcow2, json=True)
        assert (image["vm"], image["machines"]) == (True, ["q35"])
        assert image["source"] == f"import:{qcow2}"
        vm_json = json.loads(guest_file(devhost, f"{IMAGES}/vmq/vm.json").read_text())
        assert (vm_json["layout"], vm_json["firmware"]) == ("disk", ["bios"])  # no partitions
        imported = f"{IMAGES}/vmq/volume.raw"
        devhost.run("cmp", imported, _image_file(devhost, "volume.raw"))  # the same bytes
        assert os.stat(guest_file(devhost, imported)).st_blocks * 512 < 1 << 30  # sparse

        # A raw whole disk with an EFI system partition: the image's own ESP disk.
        image = devhost.hc("image", "import", "vmraw", _image_file(devhost, "boot/esp.raw"),
                           json=True)
        vm_json = json.loads(guest_file(devhost, f"{IMAGES}/vmraw/vm.json").read_text())
        assert (vm_json["layout"], vm_json["firmware"]) == ("disk", ["uefi"])
        devhost.run("cmp", f"{IMAGES}/vmraw/volume.raw", _image_file(devhost, "boot/esp.raw"))
    finally:
        devhost.hc("image", "rm", "vmq", check=False)
        devhost.hc("image", "rm", "vmraw", check=False)
        devhost.run("rm", "-f", qcow2)


def _bad_disks(devhost: DevHost) -> dict[str, tuple[str, str]]:
    """name -> (path inside the dev host, the start of the one-line error)."""
    good = f"{WORK}/good.qcow2"
    devhost.run("qemu-img", "convert", "-f", "raw", "-O", "qcow2",
                _image_file(devhost, "volume.raw"), good)
    backing = f"{WORK}/backing.qcow2"
    devhost.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw",
                backing, "1G")
    cut = f"{WORK}/cut.qcow2"
    devhost.run("sh", "-c", f"head -c 50M {good} > {cut}")
    text = f"{WORK}/notes.qcow2"
    devhost.run("sh", "-c", f"echo 'not a disk' > {text}")
    return {
        "backing": (backing, f"refusing to import {backing}: it is a qcow2 image with a "
                             "backing file, which could read other files of this host"),
        "truncated": (cut, f"{cut} is not a valid qcow2 image (truncated or corrupt): "
                           "qemu-img check finds "),
        "text": (text, f"{text} is neither a directory nor a tarball (.tar, .tar.gz, .tar.xz, "
                       ".tar.zst or .tar.bz2) nor a VM disk (qcow2, or raw with a partition "
                       "table)"),
    }


def test_bad_disks_are_refused_and_leave_nothing(devhost: DevHost,
                                                 vm_image: dict[str, Any]) -> None:
    bad = _bad_disks(devhost)
    before = devhost.hc("image", "ls", json=True)
    for name, (path, message) in bad.items():
        error = hc_fails(devhost, "image", "import", f"bad-{name}", path)
        assert error.startswith(message), (name, error)
        assert "\n" not in error, error
    assert devhost.hc("image", "ls", json=True) == before
    assert _partials(devhost) == []
    assert not any(devhost.run("test", "-e", f"{IMAGES}/bad-{name}", check=False).returncode
                   == 0 for name in bad)
    devhost.run("sh", "-c", f"rm -f {WORK}/*.qcow2")


def test_bad_builds_leave_nothing(devhost: DevHost, vm_image: dict[str, Any]) -> None:
    before = devhost.hc("image", "ls", json=True)
    assert hc_fails(devhost, "image", "build", "busybox", "--vm") == (
        "recipe busybox makes no VM images; VM images come from: debian")
    assert hc_fails(devhost, "image", "build", "debian", "--cloud-init") == (
        "--cloud-init needs --vm")
    # debootstrap fails at once: nothing listens on port 9 (discard) of the loopback.
    error = hc_fails(devhost, "image", "build", "debian", "--vm", "--name", "nomirror",
                     "--mirror", "http://127.0.0.1:9/debian", code=3)
    assert error.startswith("debootstrap bookworm from http://127.0.0.1:9/debian failed"), error
    assert devhost.hc("image", "ls", json=True) == before
    assert _partials(devhost) == []
    assert devhost.run("test", "-e", f"{IMAGES}/nomirror", check=False).returncode != 0
