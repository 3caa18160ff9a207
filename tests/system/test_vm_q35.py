"""q35 VMs through a real libvirtd in a dev host of this module's own (issue 10).

Two kinds of VM serve the module:

    blank   an imported (`hc image import`) blank qcow2: its firmware finds nothing to boot,
            which is all the libvirt side needs (domain, unit, TPM, seed, VNC, stop/start,
            removal) and costs about a second under TCG instead of a guest's boot; the blank
            firmware ignores the ACPI power button, so each stop waits the stop timeout
    real    the Debian VM image homecloud builds (`hc image build debian --vm --cloud-init`,
            once per session, copied here), booted twice: directly (kernel + initrd, with
            --user-data for cloud-init) and through OVMF and the image's EFI system
            partition with a TPM; READY comes from the guest, `hc exec` goes through
            qemu-guest-agent, and the UEFI VM is stopped and started once to show its TPM
            keeps its endorsement key

q35 boots under TCG take up to a minute on a loaded 2-core machine: three in all, each under a
hard timeout.
"""

from __future__ import annotations

import json
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from cli_checks import (
    POOL,
    assert_nothing_left,
    copy_image,
    hc_fails,
    set_crash_point,
    wait_for,
)
from console_pages import SCREEN_CANVAS, add_door_user, open_console_page, wait_for_screen
from libvirt_host import require_libvirtd
from netstate import unchanged_network

from homecloud.devhost import DevHost
from homecloud.instances.drivers.domainxml import vnc_socket

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.system
pytest_plugins = ("browser",)

IMAGE = "blank"
UEFI_IMAGE = "blankefi"  # a blank GPT disk with an (empty) EFI system partition
NAME = "vq"
REAL = "debian-vm"
DIRECT = "vqd"
UEFI = "vqu"
SWTPM_STATE = "/var/lib/libvirt/swtpm"
BOOT_TIMEOUT = 300  # `hc run`/`hc start` of a booting q35 under TCG on a loaded machine
# cloud-init's runcmd leaves proof it ran, with the instance-id the seed gave it; its users
# gives the guest one who logs in at the VM's screen, through the browser.
USER_DATA = """#cloud-config
users:
  - name: {user}
    lock_passwd: false
    passwd: '{password_hash}'
runcmd:
  - [sh, -c, 'cat /var/lib/cloud/data/instance-id > /var/lib/hc-runcmd-proof']
"""
# TPM2_ReadPublic of the persistent endorsement key 0x81010001 (swtpm_setup makes it), as
# the guest's shell can send it to the kernel's TPM resource manager: the answer, in hex,
# depends on the TPM's state alone.
READ_EK = (r"exec 3<>/dev/tpmrm0; "
           r"printf '\200\001\000\000\000\016\000\000\001\163\201\001\000\001' >&3; "
           r"dd bs=4096 count=1 status=none <&3 | od -An -v -tx1")
STOP_TIMEOUT = 30  # the agent's default stop timeout (seconds)
SCREEN_USER = "screenuser"
# Typed through noVNC, whose QEMU key events carry scancodes the guest maps with its own (US)
# keymap: unshifted keys only, so no layout question arises.
SCREEN_PASSWORD = "typed-at-the-screen-1"
DOOR_USER = "screen_viewer"  # the front-door user who opens the console
DOOR_PASSWORD = "screen viewer password"
LIBVIRT_SOCKETS = ("libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket")


@pytest.fixture(scope="module")
def q35_host(private_devhost: DevHost) -> Iterator[DevHost]:
    host = private_devhost
    require_libvirtd(host)
    host.run("qemu-img", "create", "-q", "-f", "qcow2", "/tmp/blank.qcow2", "64M")
    host.hc("image", "import", IMAGE, "/tmp/blank.qcow2")
    yield host


def virsh(host: DevHost, *args: str) -> str:
    return host.run("virsh", "--connect", "qemu:///system", *args).stdout


def domains(host: DevHost) -> dict[str, str]:
    """Every libvirt domain: name -> state."""
    names = virsh(host, "list", "--all", "--name").split()
    return {name: virsh(host, "domstate", name).strip() for name in names}


def tpm_states(host: DevHost) -> list[str]:
    return host.run("sh", "-c", f"ls {SWTPM_STATE} 2>/dev/null || true").stdout.split()


@contextmanager
def leaves_nothing(host: DevHost, name: str) -> Iterator[None]:
    """What a refused, failed or removed VM ``name`` must leave as it was: its unit, dataset
    and record gone; taps, leases, DNS records, firewall rules, domains and TPM states as
    before."""
    before = (domains(host), tpm_states(host))
    with unchanged_network(host):
        yield
    assert_nothing_left(host, name)
    assert (domains(host), tpm_states(host)) == before


@pytest.fixture(scope="module")
def vm(q35_host: DevHost) -> Iterator[str]:
    q35_host.hc("run", IMAGE, "--vm", "--machine", "q35", "--name", NAME, "--tpm",
                "--memory", "256M", timeout=120)
    yield NAME
    q35_host.hc("rm", "-f", NAME, check=False, timeout=120)


def test_the_vm_is_a_persistent_libvirt_domain_in_homecloud_slice(q35_host: DevHost,
                                                                  vm: str) -> None:
    host = q35_host
    assert domains(host)[f"hc-{vm}"] == "running"
    assert virsh(host, "dominfo", f"hc-{vm}").count("Persistent:     yes") == 1
    assert host.run("systemctl", "is-active", f"hc-{vm}.service").stdout.strip() == "active"
    machines = host.run("machinectl", "list", "--no-legend").stdout
    assert f"hc-{vm}" in machines  # registered with machined (qemu-N-hc-vq)
    scope = host.run("sh", "-c", "cat /proc/$(pgrep -f 'guest=hc-vq' | head -1)/cgroup"
                     ).stdout
    assert "/hc.slice/machine-qemu" in scope
    listed = {i["name"]: i for i in host.hc("ls", json=True)}
    assert listed[vm]["state"] == "running"


def test_tpm_state_and_seed_belong_to_the_vm(q35_host: DevHost, vm: str) -> None:
    host = q35_host
    files = host.run("ls", f"{POOL}/instances/{vm}").stdout.split()
    assert {"seed.img", "volume.raw", "console.log"} <= set(files)
    uuid = virsh(host, "domuuid", f"hc-{vm}").strip()
    assert uuid in tpm_states(host)
    # The seed is a CIDATA file system cloud-init finds, naming the instance.
    assert host.run("blkid", "-s", "LABEL", "-o", "value",
                    f"{POOL}/instances/{vm}/seed.img").stdout.strip() == "CIDATA"
    meta = host.run("mtype", "-i", f"{POOL}/instances/{vm}/seed.img", "::meta-data").stdout
    assert f'local-hostname: "{vm}"' in meta
    network = host.run("mtype", "-i", f"{POOL}/instances/{vm}/seed.img",
                       "::network-config").stdout
    assert "version: 2" in network and "macaddress" in network


def test_vnc_listens_on_a_unix_socket_read_from_the_domain(q35_host: DevHost, vm: str) -> None:
    host = q35_host
    path = vnc_socket(virsh(host, "dumpxml", f"hc-{vm}"))
    assert path is not None
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(f"/proc/{host.pid}/root{path}")
        assert sock.recv(12).startswith(b"RFB 003.")


def test_the_vm_outlives_the_agent_and_keeps_its_tpm_across_stop_and_start(
        q35_host: DevHost, vm: str) -> None:
    host = q35_host
    uuid = virsh(host, "domuuid", f"hc-{vm}").strip()
    unit_pid = host.run("systemctl", "show", "-p", "MainPID", "--value",
                        f"hc-{vm}.service").stdout.strip()
    host.run("systemctl", "kill", "-s", "KILL", "hcd.service")
    assert domains(host)[f"hc-{vm}"] == "running"
    assert host.run("systemctl", "is-active", f"hc-{vm}.service").stdout.strip() == "active"
    host.run("systemctl", "restart", "hcd.service")  # a clean restart stops no VM either
    assert {i["name"]: i["state"] for i in host.hc("ls", json=True)}[vm] == "running"
    assert domains(host)[f"hc-{vm}"] == "running"
    assert host.run("systemctl", "show", "-p", "MainPID", "--value",
                    f"hc-{vm}.service").stdout.strip() == unit_pid
    host.hc("stop", vm, timeout=120)
    assert domains(host)[f"hc-{vm}"] == "shut off"
    assert host.run("systemctl", "is-active", f"hc-{vm}.service",
                    check=False).stdout.strip() == "inactive"
    assert uuid in tpm_states(host)  # kept while the VM is stopped
    host.hc("start", vm, timeout=120)
    assert domains(host)[f"hc-{vm}"] == "running"
    assert virsh(host, "domuuid", f"hc-{vm}").strip() == uuid


def test_removal_leaves_no_domain_tpm_state_or_tap(q35_host: DevHost, vm: str) -> None:
    host = q35_host
    name = "vqrm"
    with leaves_nothing(host, name):
        # --restart always: removal must not bring it back.
        host.hc("run", IMAGE, "--vm", "--machine", "q35", "--name", name, "--tpm", "--memory",
                "256M", "--restart", "always", timeout=120)
        assert domains(host)[f"hc-{name}"] == "running"
        uuid = virsh(host, "domuuid", f"hc-{name}").strip()
        assert uuid in tpm_states(host)
        # Destroyed from outside, the VM stays off: its unit ends and is not restarted.
        virsh(host, "destroy", f"hc-{name}")
        wait_for("the unit to end", lambda: host.run(
            "systemctl", "is-active", f"hc-{name}.service", check=False).stdout.strip()
            in ("inactive", "failed"))
        assert host.run("systemctl", "show", "-p", "NRestarts", "--value",
                        f"hc-{name}.service").stdout.strip() == "0"
        assert domains(host)[f"hc-{name}"] == "shut off"
        assert f"domain hc-{name} was destroyed" in host.run(
            "journalctl", "-u", f"hc-{name}.service", "-o", "cat").stdout
        host.hc("start", name, timeout=120)
        # -f pulls the plug at once: the blank firmware ignores the power button, and waiting
        # for it would take the whole stop timeout.
        start = time.monotonic()
        host.hc("rm", "-f", name, timeout=120)
        removed_in = time.monotonic() - start
    assert uuid not in tpm_states(host)
    assert removed_in < STOP_TIMEOUT, removed_in
    assert vm in {i["name"] for i in host.hc("ls", json=True)}  # the other VM is untouched


@pytest.mark.parametrize(("args", "message"), [
    (("--user-data", "/tmp/not-cloud-config"),
     "--user-data is not cloud-config: its first line must be '#cloud-config', not "
     "'runcmd: [ls]'"),
    (("--user-data", "/tmp/bad-yaml"),
     "--user-data is not valid YAML at line 3: expected ',' or ']', but got '<stream end>'"),
    (("--user-data", "/tmp/no-such-file"), "--user-data"),
    (("--cdrom", "/tmp/no-such.iso"), "--cdrom /tmp/no-such.iso does not exist on the host"),
    (("--cdrom", "/tmp"), "--cdrom /tmp is not a file: give an ISO image"),
])
def test_bad_input_is_refused_with_nothing_left(q35_host: DevHost, args: tuple[str, ...],
                                                message: str) -> None:
    host = q35_host
    host.run("sh", "-c", "printf 'runcmd: [ls]\\n' > /tmp/not-cloud-config; "
             "printf '#cloud-config\\nruncmd: [ls\\n' > /tmp/bad-yaml")
    with leaves_nothing(host, "vqbad"):
        error = hc_fails(host, "run", IMAGE, "--vm", "--machine", "q35", "--name", "vqbad",
                         *args)
    assert message in error


@pytest.fixture(scope="module")
def blank_uefi(q35_host: DevHost) -> str:
    """An imported blank disk that boots with UEFI: OVMF starts and finds nothing to boot."""
    q35_host.run("truncate", "-s", "64M", "/tmp/blank-efi.raw")
    q35_host.run("sfdisk", "-q", "/tmp/blank-efi.raw", input="label: gpt\n,,U\n")
    q35_host.hc("image", "import", UEFI_IMAGE, "/tmp/blank-efi.raw")
    return UEFI_IMAGE


@pytest.mark.parametrize("step", ["tap", "seed", "machine", "unit"])
def test_a_crash_while_creating_a_uefi_tpm_vm_is_cleaned_up(q35_host: DevHost, blank_uefi: str,
                                                            step: str) -> None:
    """The agent SIGKILLed after ``step``: the domain defined ("machine") or running with its
    NVRAM and TPM state made ("unit"); its reconcile pass removes all of it."""
    host = q35_host
    with leaves_nothing(host, "vqcrash"):
        set_crash_point(host, step)
        try:
            hc_fails(host, "run", blank_uefi, "--vm", "--machine", "q35", "--uefi", "--tpm",
                     "--name", "vqcrash", "--memory", "256M",
                     message="lost the connection to the agent")
            if step == "unit":  # the VM was running when the agent died, with its NVRAM
                assert domains(host)["hc-vqcrash"] == "running"
                assert host.run("test", "-s", f"{POOL}/instances/vqcrash/nvram.fd",
                                check=False).returncode == 0
        finally:
            set_crash_point(host, None)
        host.hc("ls")  # the agent starts through its socket and reconciles
    journal = host.run("journalctl", "-u", "hcd.service", "-n", "30", "-o", "cat").stdout
    assert "reconcile instances: removed half made: vqcrash" in journal, journal


def test_without_libvirtd_q35_is_refused_naming_what_to_start(q35_host: DevHost) -> None:
    host = q35_host
    with leaves_nothing(host, "vqnone"):
        host.run("systemctl", "stop", *LIBVIRT_SOCKETS, "libvirtd.service")
        try:
            error = hc_fails(host, "run", IMAGE, "--vm", "--machine", "q35", "--name",
                             "vqnone", code=3)
        finally:
            host.run("systemctl", "start", "libvirtd.service")
    assert "libvirtd does not answer at qemu:///system" in error
    assert "libvirt-daemon-system" in error


def test_the_domain_opens_only_the_vms_own_files(q35_host: DevHost,
                                                                    vm: str) -> None:
    """Every file the domain opens is the VM's own (pool dataset) or firmware."""
    xml = virsh(q35_host, "dumpxml", f"hc-{vm}")
    sources = [s.get("file") for s in ET.fromstring(xml).iterfind("devices/disk/source")]
    assert sources and all(str(s).startswith(f"{POOL}/instances/{vm}/") for s in sources), \
        json.dumps(sources)


# -- a real guest: homecloud's Debian VM image -------------------------------------------------

@pytest.fixture(scope="module")
def real_image(q35_host: DevHost, devhost: DevHost, vm_image_build: Any) -> str:
    """The session's `debian-vm` (built with cloud-init), copied into this module's host."""
    copy_image(devhost, q35_host, REAL)
    return REAL


@pytest.fixture(scope="module")
def direct_vm(q35_host: DevHost, real_image: str) -> Iterator[str]:
    """Direct kernel boot, with user-data for the image's cloud-init."""
    hashed = q35_host.run("openssl", "passwd", "-6", SCREEN_PASSWORD).stdout.strip()
    q35_host.run("tee", "/tmp/runcmd.yaml", input=USER_DATA.format(user=SCREEN_USER,
                                                                  password_hash=hashed))
    q35_host.hc("run", real_image, "--vm", "--machine", "q35", "--name", DIRECT, "--memory",
                "512M", "--cpus", "2", "--user-data", "/tmp/runcmd.yaml", timeout=BOOT_TIMEOUT)
    yield DIRECT
    q35_host.hc("rm", "-f", DIRECT, check=False, timeout=120)


@pytest.fixture(scope="module")
def uefi_vm(q35_host: DevHost, real_image: str) -> Iterator[str]:
    """OVMF, the image's EFI system partition, a TPM."""
    q35_host.hc("run", real_image, "--vm", "--machine", "q35", "--name", UEFI, "--uefi",
                "--tpm", "--memory", "512M", "--cpus", "2", timeout=BOOT_TIMEOUT)
    yield UEFI
    q35_host.hc("rm", "-f", UEFI, check=False, timeout=120)


def guest(host: DevHost, vm: str, script: str, timeout: float = 60) -> str:
    """``script`` run by the guest's shell through `hc exec`; its output."""
    return host.hc("exec", vm, "--", "sh", "-c", script, timeout=timeout).stdout


def test_direct_boot_is_ready_from_the_guest_and_hc_exec_runs_there(q35_host: DevHost,
                                                                     direct_vm: str) -> None:
    host = q35_host
    # `hc run` returned once the guest said READY: multi-user.target is reached.
    assert guest(host, direct_vm, "systemctl is-active multi-user.target") == "active\n"
    assert guest(host, direct_vm, "cat /etc/hostname") == f"{direct_vm}\n"
    cmdline = guest(host, direct_vm, "cat /proc/cmdline")
    assert "root=LABEL=hc-root" in cmdline
    assert guest(host, direct_vm, "test -d /sys/firmware/efi || echo bios") == "bios\n"
    # Exit status, stderr and stdin pass through as if the command ran here.
    failed = host.hc("exec", direct_vm, "--", "sh", "-c", "echo oops >&2; exit 3", check=False)
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, "", "oops\n")
    piped = host.run(*host.hc_argv(), "exec", direct_vm, "--", "tr", "a-z", "A-Z",
                     input="through the guest agent\n")
    assert piped.stdout == "THROUGH THE GUEST AGENT\n"


def test_hc_exec_says_what_is_wrong(q35_host: DevHost, direct_vm: str, vm: str) -> None:
    host = q35_host
    # The guest agent's words, on the command's stderr as a program that cannot run says it.
    missing = host.hc("exec", direct_vm, "--", "no-such-program", check=False)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == ("Failed to execute child process \u201cno-such-program\u201d "
                              "(No such file or directory)\n")
    # The blank disk has no guest agent: say so before trying.
    error = hc_fails(host, "exec", vm, "--", "true")
    assert error == (f"hc exec needs qemu-guest-agent in the guest, and {vm}'s image has "
                     f"none: reach it with ssh (--ssh-key), or its console with "
                     f"`hc console {vm} --text`")


def test_cloud_init_runs_the_users_runcmd(q35_host: DevHost, direct_vm: str) -> None:
    host = q35_host
    # runcmd runs in cloud-init's last stage (cloud-final.service), which may end after READY
    # (multi-user.target).
    proof = wait_for("cloud-init's runcmd", lambda: guest(
        host, direct_vm, "cat /var/lib/hc-runcmd-proof 2>/dev/null || true").strip(),
        timeout=180)
    machine_id = guest(host, direct_vm, "cat /etc/machine-id").strip()
    assert proof == machine_id  # the seed's instance-id is the instance's machine-id
    uuid = virsh(host, "domuuid", f"hc-{direct_vm}").strip()
    assert uuid.replace("-", "") == machine_id


def test_cloud_init_ends_without_errors(q35_host: DevHost, direct_vm: str) -> None:
    """Every module cloud-init ran succeeded: locale among them (the image's locale is one
    that needs no locale-gen)."""
    status = q35_host.hc("exec", direct_vm, "--", "cloud-init", "status", "--wait",
                         "--format", "json", check=False, timeout=300)
    report = json.loads(status.stdout)
    assert (status.returncode, report["status"], report["errors"]) == (0, "done", []), report
    assert guest(q35_host, direct_vm, "locale | head -1") == "LANG=C.UTF-8\n"


def test_a_login_typed_at_the_vms_screen_in_a_browser(q35_host: DevHost, direct_vm: str,
                                                       page: Page) -> None:
    """`hc console` of the VM: its screen (libvirt's VNC socket) drawn by noVNC after the
    front door's login; a person types at tty1's login prompt and runs a command there."""
    host = q35_host
    wait_for(f"cloud-init to make {SCREEN_USER}", lambda: guest(
        host, direct_vm, f"id -u {SCREEN_USER} 2>/dev/null || true").strip(), timeout=180)
    assert guest(host, direct_vm, "systemctl is-active getty@tty1") == "active\n"
    add_door_user(host, DOOR_USER, DOOR_PASSWORD)
    open_console_page(page, host, direct_vm, DOOR_USER, DOOR_PASSWORD, "screen")
    wait_for_screen(page, "login-prompt")
    page.locator(SCREEN_CANVAS).focus()
    page.keyboard.type(f"{SCREEN_USER}\n")
    # login(1) flushes what was typed ahead when it asks for the password: wait for it to ask
    # (login runs on tty1 with echo off).
    wait_for("the password prompt", lambda: guest(
        host, direct_vm, "pgrep -x -t tty1 login >/dev/null && stty -F /dev/tty1 -a || true"
    ).split().count("-echo") == 1, timeout=60)
    page.keyboard.type(f"{SCREEN_PASSWORD}\n")
    wait_for(f"{SCREEN_USER}'s shell on tty1", lambda: guest(
        host, direct_vm, f"pgrep -u {SCREEN_USER} -t tty1 || true").strip(), timeout=60)
    page.keyboard.type("touch /tmp/typed-at-the-screen\n")
    owner = wait_for("the command typed at the screen", lambda: guest(
        host, direct_vm, "stat -c %U /tmp/typed-at-the-screen 2>/dev/null || true").strip(),
        timeout=60)
    assert owner == SCREEN_USER
    wait_for_screen(page, "logged-in")


def read_ek(host: DevHost, vm: str) -> str:
    """The TPM's answer to TPM2_ReadPublic of its endorsement key, as hex."""
    answer = "".join(guest(host, vm, READ_EK).split())
    assert answer[12:20] == "00000000", answer  # TPM_RC_SUCCESS
    return answer


def test_uefi_boot_with_a_tpm_is_ready(q35_host: DevHost, uefi_vm: str) -> None:
    host = q35_host
    assert guest(host, uefi_vm, "systemctl is-active multi-user.target") == "active\n"
    assert guest(host, uefi_vm, "test -d /sys/firmware/efi && echo uefi") == "uefi\n"
    assert guest(host, uefi_vm, "cat /sys/class/tpm/tpm0/tpm_version_major") == "2\n"
    files = host.run("ls", f"{POOL}/instances/{uefi_vm}").stdout.split()
    assert {"nvram.fd", "volume.raw", "console.log"} <= set(files)
    assert "seed.img" not in files  # homecloud's own image: identity is in the disk


def test_the_tpm_keeps_its_endorsement_key_across_agent_kill_and_stop_start(
        q35_host: DevHost, uefi_vm: str) -> None:
    host = q35_host
    uuid = virsh(host, "domuuid", f"hc-{uefi_vm}").strip()
    before = read_ek(host, uefi_vm)
    host.run("systemctl", "kill", "-s", "KILL", "hcd.service")
    assert host.run("systemctl", "is-active", f"hc-{uefi_vm}.service").stdout.strip() == "active"
    assert read_ek(host, uefi_vm) == before
    host.hc("stop", uefi_vm, timeout=120)  # a real guest powers off on ACPI
    assert domains(host)[f"hc-{uefi_vm}"] == "shut off"
    assert uuid in tpm_states(host)
    assert host.run("test", "-s", f"{POOL}/instances/{uefi_vm}/nvram.fd",
                    check=False).returncode == 0
    stopped = host.hc("exec", uefi_vm, "--", "true", check=False)
    assert stopped.returncode == 1 and "not running" in stopped.stderr, stopped.stderr
    host.hc("start", uefi_vm, timeout=BOOT_TIMEOUT)
    assert read_ek(host, uefi_vm) == before


@pytest.mark.parametrize("which", ["direct_vm", "uefi_vm"])
def test_a_real_vms_domain_opens_only_its_own_files(q35_host: DevHost, which: str,
                                                    request: pytest.FixtureRequest) -> None:
    name = request.getfixturevalue(which)
    root = ET.fromstring(virsh(q35_host, "dumpxml", f"hc-{name}"))
    files = [s.get("file") for s in root.iterfind("devices/disk/source")]
    files += [e.text for e in root.iterfind("os/kernel")] + [e.text for e in
                                                             root.iterfind("os/initrd")]
    files += [e.text for e in root.iterfind("os/nvram")]
    assert files and all(str(f).startswith(f"{POOL}/instances/{name}/") for f in files), files


def test_a_corrupt_image_fails_with_qemus_words_and_leaves_nothing(q35_host: DevHost,
                                                                   real_image: str) -> None:
    host = q35_host
    broken = f"{POOL}/images/vqbroken"
    host.run("btrfs", "subvolume", "snapshot", f"{POOL}/images/{real_image}", broken)
    host.run("truncate", "-s", "4096", f"{broken}/boot/vmlinuz")  # a kernel cut short
    host.run("systemctl", "restart", "hcd.service")  # the agent adopts the image
    try:
        with leaves_nothing(host, "vqbad"):
            error = hc_fails(host, "run", "vqbroken", "--vm", "--machine", "q35", "--name",
                             "vqbad")
        assert error.startswith("hc-vqbad.service failed to start")
        assert "libvirt cannot start domain hc-vqbad" in error
        assert "qemu: invalid kernel header" in error
    finally:
        host.hc("image", "rm", "vqbroken", check=False)
