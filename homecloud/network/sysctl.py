"""The kernel settings instance networking needs, written under /proc/sys/net.

/proc/sys/net belongs to the network namespace of the process that opens it: the agent sets
the host's, tests run this under `ip netns exec` for their own namespaces.
"""

from __future__ import annotations

from pathlib import Path

PROC_SYS = Path("/proc/sys")


def _write(path: Path, value: str) -> bool:
    """Write ``value`` unless it is already there; True if written."""
    if path.read_text().strip() == value:
        return False
    path.write_text(value + "\n")
    return True


def enable_forwarding(root: Path = PROC_SYS) -> list[str]:
    """Route between the bridge and the uplink, for IPv4 and IPv6; return what was changed.

    An interface with accept_ra=1 ignores router advertisements once IPv6 forwarding is on and
    would lose its SLAAC address and default route: those are moved to accept_ra=2 (accept them
    even when forwarding) first.
    """
    changed = []
    conf6 = root / "net/ipv6/conf"
    for iface in sorted(conf6.iterdir()) if conf6.is_dir() else []:
        accept_ra = iface / "accept_ra"
        if iface.name not in ("all", "lo") and accept_ra.exists() \
                and accept_ra.read_text().strip() == "1":
            _write(accept_ra, "2")
            changed.append(f"net.ipv6.conf.{iface.name}.accept_ra=2")
    for key in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"):
        if _write(root / key, "1"):
            changed.append(key.replace("/", ".") + "=1")
    return changed


def enable_route_localnet(bridge: str, root: Path = PROC_SYS) -> bool:
    """Let connections from the host to 127.0.0.1:PORT be DNATed onto the bridge: the kernel
    otherwise drops packets with a loopback source leaving a real interface."""
    return _write(root / f"net/ipv4/conf/{bridge}/route_localnet", "1")
