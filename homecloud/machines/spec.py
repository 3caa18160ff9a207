"""What a user asks for when a bare-metal machine joins: `hc machine add`. Pure validation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from homecloud.errors import UserError
from homecloud.machines.workflow import default_workflow
from homecloud.names import validate_instance_name, validate_name

_MAC_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}")
_DISK_RE = re.compile(r"/dev/[A-Za-z0-9][A-Za-z0-9/_.:-]*")
_SSH_KEY_RE = re.compile(r"(ssh-|ecdsa-|sk-)[A-Za-z0-9@._-]+ [A-Za-z0-9+/=]+( [^\n\r]*)?")


def normalize_mac(text: str) -> str:
    """``text`` as lower-case colon-separated hex; UserError for anything else."""
    mac = text.strip().lower()
    if not _MAC_RE.fullmatch(mac):
        raise UserError(f"MAC address {text!r} is invalid: use six hex pairs like "
                        "52:54:00:12:34:56")
    mac = mac.replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise UserError(f"MAC address {text!r} is a multicast address, not a machine's")
    if mac == "00:00:00:00:00:00":
        raise UserError("MAC address 00:00:00:00:00:00 is not a machine's")
    return mac


def check_ssh_key(line: str) -> str:
    key = line.strip()
    if not _SSH_KEY_RE.fullmatch(key):
        raise UserError(f"{key[:40]!r} is not an SSH public key (expected e.g. "
                        "'ssh-ed25519 AAAA... comment')")
    return key


@dataclass(frozen=True)
class MachineSpec:
    name: str
    mac: str
    image: str
    disk: str | None = None  # None: the installer picks the machine's first disk
    diskless: bool = False
    ssh_keys: tuple[str, ...] = ()
    workflow: str = ""  # "" : the default for diskless or not

    def validated(self) -> MachineSpec:
        """This spec checked and normalised (MAC lower-case, workflow named); UserError for
        the first thing wrong."""
        validate_instance_name(self.name)
        validate_name(self.image, "image name")
        if self.disk is not None:
            if self.diskless:
                raise UserError("--disk and --diskless exclude each other: a diskless "
                                "machine runs from RAM")
            if not _DISK_RE.fullmatch(self.disk) or ".." in self.disk.split("/"):
                raise UserError(f"--disk {self.disk!r} is invalid: use a device path such as "
                                "/dev/sda or /dev/disk/by-id/...")
        workflow = self.workflow or default_workflow(self.diskless)
        validate_name(workflow, "workflow name")
        return MachineSpec(name=self.name, mac=normalize_mac(self.mac), image=self.image,
                           disk=self.disk, diskless=self.diskless,
                           ssh_keys=tuple(check_ssh_key(k) for k in self.ssh_keys),
                           workflow=workflow)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ssh_keys": list(self.ssh_keys)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MachineSpec:
        return cls(name=str(data["name"]), mac=str(data["mac"]), image=str(data["image"]),
                   disk=data.get("disk"), diskless=bool(data.get("diskless", False)),
                   ssh_keys=tuple(data.get("ssh_keys", ())),
                   workflow=str(data.get("workflow", "")))

