"""A VM's identity written into its forked disk before it boots (the vm-identity step), for
homecloud's own VM images, whose volume is the guest's ext4 root file system.

Written with debugfs, without mounting: one debugfs run edits the file system in ~6 ms
(measured), needs no loop device (a dev host may have none) and cannot reach outside the
volume whatever links the image holds; mounting needs a loop device and a mount and unmount,
and the image's links must then be guarded against. Files written:

    /etc/hostname, /etc/machine-id, /etc/hosts, /etc/resolv.conf
    /etc/systemd/network/10-homecloud.network   static addresses, gateways, DNS (networkd)
    /root/.ssh/authorized_keys                   --ssh-key
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from homecloud.errors import HomecloudError
from homecloud.instances.rootfs import GuestNetwork, hosts_file, resolv_conf
from homecloud.tools import require_tool, run_tool

DEBUGFS_PACKAGE = "e2fsprogs"
NETWORK_FILE = "etc/systemd/network/10-homecloud.network"
AUTHORIZED_KEYS = "root/.ssh/authorized_keys"
# debugfs reports these for `rm` of a file that is not there and `mkdir` of one that is.
_HARMLESS = ("File not found by ext2_lookup", "Ext2 directory already exists")


@dataclass(frozen=True)
class GuestFile:
    path: str  # relative to the guest's root
    text: str
    mode: int = 0o644


@dataclass(frozen=True)
class VmNetwork:
    """What the guest's systemd-networkd is told."""

    mac: str
    addresses: tuple[str, ...]  # with prefix: "10.1.2.3/24"
    gateways: tuple[str, ...]
    guest: GuestNetwork  # resolvers and search domain, for resolv.conf and /etc/hosts


def network_file(network: VmNetwork) -> str:
    """A systemd-networkd .network file matching the VM's NIC by its MAC."""
    lines = ["# written by homecloud: this VM's addresses on the host's bridge", "[Match]",
             f"MACAddress={network.mac}", "", "[Network]"]
    lines += [f"Address={address}" for address in network.addresses]
    lines += [f"Gateway={gateway}" for gateway in network.gateways]
    lines += [f"DNS={server}" for server in network.guest.nameservers]
    lines += [f"Domains={network.guest.search}", "IPv6AcceptRA=no"]
    return "\n".join(lines) + "\n"


def identity_files(name: str, machine_id: str, current_hosts: str,
                   network: VmNetwork | None, ssh_keys: Sequence[str]) -> list[GuestFile]:
    """Everything vm-identity writes, as files (pure)."""
    files = [GuestFile("etc/hostname", f"{name}\n"),
             GuestFile("etc/machine-id", f"{machine_id}\n", 0o444)]
    if network is None:
        files.append(GuestFile("etc/hosts", hosts_file(current_hosts, name)))
    else:
        fqdn = f"{name}.{network.guest.search}"
        files += [GuestFile("etc/hosts", hosts_file(current_hosts, name,
                                                    network.guest.addresses, fqdn)),
                  GuestFile("etc/resolv.conf", resolv_conf(network.guest)),
                  GuestFile(NETWORK_FILE, network_file(network))]
    if ssh_keys:
        keys = "".join(key.strip() + "\n" for key in ssh_keys)
        files.append(GuestFile(AUTHORIZED_KEYS, keys, 0o600))
    return files


def debugfs_script(files: Sequence[GuestFile], sources: Mapping[str, Path]) -> str:
    """debugfs commands writing ``files`` (``sources``: guest path -> host file holding its
    text, with its mode). Parent directories are made; root's .ssh is 0700 as sshd wants."""
    commands: list[str] = []
    made: set[str] = set()
    for item in files:
        parts = item.path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/" + "/".join(parts[:depth])
            if directory not in made and directory not in ("/etc", "/root"):
                commands.append(f"mkdir {directory}")
                if directory == "/root/.ssh":
                    commands.append(f"set_inode_field {directory} mode 040700")
                made.add(directory)
        # rm first: write refuses an existing name, and a link is replaced, not followed.
        commands += [f"rm /{item.path}", f"write {sources[item.path]} /{item.path}"]
    return "\n".join(commands) + "\n"


def _debugfs() -> str:
    return require_tool("debugfs", DEBUGFS_PACKAGE)


def read_guest_file(volume: Path, path: str) -> str:
    """A file of the guest's file system; "" when it has none."""
    result = run_tool([_debugfs(), "-R", f"cat /{path}", str(volume)], timeout=30)
    return result.stdout if result.ok else ""


def write_guest_files(volume: Path, files: Sequence[GuestFile]) -> None:
    """Write ``files`` into the ext4 file system in ``volume`` in one debugfs run."""
    debugfs = _debugfs()
    with tempfile.TemporaryDirectory(prefix="hc-identity-") as scratch:
        sources: dict[str, Path] = {}
        for index, item in enumerate(files):
            source = Path(scratch, str(index))
            source.write_text(item.text)
            source.chmod(item.mode)  # debugfs copies the mode (and root's ownership)
            sources[item.path] = source
        script = Path(scratch, "script")
        script.write_text(debugfs_script(files, sources))
        result = run_tool([debugfs, "-w", "-f", str(script), str(volume)], timeout=60)
    errors = [line for line in result.stderr.splitlines()
              if ":" in line and not line.startswith("debugfs ")
              and not any(harmless in line for harmless in _HARMLESS)]
    if not result.ok or errors:
        raise HomecloudError(f"cannot write the VM's identity into its disk: "
                             f"{(errors or [result.first_error_line()])[0]}")
