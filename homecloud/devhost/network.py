"""Applying the dev hosts' network plan (netplan.py): the bridge and nftables table on the
machine, and the guest's end of each dev host's link.

This is set-up, run once per boot of a dev host, so it drives `ip` and `nft` rather than
netlink directly. Everything here is idempotent and safe to run while other dev hosts use the
bridge: it replaces our own table in one transaction and never touches any other.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from homecloud.devhost.netplan import GUEST_LINK, DevHostAddress, NetworkPlan
from homecloud.errors import HostError

SYS_NET = Path("/sys/class/net")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def _run(what: str, argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which(argv[0]) is None:
        raise HostError(f"{argv[0]} is missing: install it (apt-get install iproute2 nftables)")
    result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False,
                            timeout=60)
    if result.returncode != 0:
        detail = " ".join(result.stderr.split()) or f"exit {result.returncode}"
        raise HostError(f"{what} failed: {detail}")
    return result


def link_exists(name: str) -> bool:
    return (SYS_NET / name).exists()


def bridge_ports(plan: NetworkPlan) -> list[str]:
    """The links attached to the bridge (one per running dev host)."""
    brif = SYS_NET / plan.bridge / "brif"
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


def table_exists(plan: NetworkPlan) -> bool:
    result = subprocess.run(["nft", "list", "table", "ip", plan.table], capture_output=True,
                            check=False)
    return result.returncode == 0


def ensure_machine_network(plan: NetworkPlan) -> None:
    """Make the bridge, its addresses, IPv4 forwarding and the masquerading table exist."""
    if not link_exists(plan.bridge):
        try:
            _run(f"creating the bridge {plan.bridge}",
                 ["ip", "link", "add", plan.bridge, "address", plan.mac, "type", "bridge"])
        except HostError:
            if not link_exists(plan.bridge):  # else another dev host's boot made it meanwhile
                raise
    _run(f"configuring the bridge {plan.bridge}", ["ip", "-batch", "-"],
         input=plan.bridge_commands())
    if IP_FORWARD.read_text().strip() != "1":
        IP_FORWARD.write_text("1\n")
    _run(f"loading the nftables table ip {plan.table}", ["nft", "-f", "-"],
         input=plan.firewall())


def remove_machine_network(plan: NetworkPlan) -> bool:
    """Remove the bridge and our table, unless a dev host is still attached; True if nothing of
    them is left. IPv4 forwarding stays on: something else may rely on it by now."""
    if bridge_ports(plan):
        return False
    if table_exists(plan):
        _run(f"removing the nftables table ip {plan.table}",
             ["nft", "delete", "table", "ip", plan.table])
    if link_exists(plan.bridge):
        _run(f"removing the bridge {plan.bridge}", ["ip", "link", "delete", plan.bridge])
    return True


def _has_guest_link(init_pid: int) -> bool:
    """Whether ``host0`` is in the network namespace of ``init_pid`` yet (/proc/PID/net shows
    that process's namespace)."""
    try:
        devices = Path(f"/proc/{init_pid}/net/dev").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(line.strip().startswith(f"{GUEST_LINK}:") for line in devices.splitlines())


def wait_for_guest_link(init_pid: Callable[[], int | None], timeout: float) -> int:
    """Wait until the guest's PID 1 exists and systemd-nspawn has moved ``host0`` into its
    namespace; return that pid. ``init_pid`` returns None while there is no guest yet."""
    deadline = time.monotonic() + timeout
    while True:
        pid = init_pid()
        if pid is not None and _has_guest_link(pid):
            return pid
        if time.monotonic() >= deadline:
            raise HostError(f"{GUEST_LINK} did not appear in the guest within {timeout:.0f} s")
        time.sleep(0.02)


def configure_guest(init_pid: int, plan: NetworkPlan, address: DevHostAddress) -> None:
    """Address ``host0`` inside and route through the bridge."""
    _run(f"configuring {GUEST_LINK} in the guest",
         ["nsenter", "-t", str(init_pid), "-n", "ip", "-batch", "-"],
         input=plan.guest_commands(address))


def host_link_alias(machine: str) -> str:
    """What systemd-nspawn calls the machine's end of a --network-bridge link: vb-MACHINE, as
    the link's name, or as its altname when that is too long for a name."""
    return f"vb-{machine}"


def remove_host_link(machine: str) -> None:
    """Remove the machine's end of a stopped dev host's link. The kernel would, but only once it
    gets round to freeing the guest's namespace: until then a new `up` of the same name could
    not make its link."""
    subprocess.run(["ip", "link", "delete", host_link_alias(machine)], capture_output=True,
                   check=False, timeout=30)


def host_side_link(init_pid: int) -> str | None:
    """The name on the machine of the other end of the guest's ``host0``, or None."""
    result = subprocess.run(["nsenter", "-t", str(init_pid), "-n", "ip", "-json", "link", "show",
                             GUEST_LINK], capture_output=True, text=True, check=False, timeout=10)
    if result.returncode != 0 or not result.stdout.strip():
        return None
    [link] = json.loads(result.stdout)
    index = link.get("link_index")
    try:
        return socket.if_indextoname(int(index)) if index is not None else None
    except OSError:
        return None
