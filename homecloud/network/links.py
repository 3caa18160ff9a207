"""Links over netlink (pyroute2): the host bridge, the veth pairs that plug containers into it
and the taps that plug VMs into it.

Every function is idempotent: it makes what is missing, fixes what differs and leaves the rest,
so the agent can call it again after a crash. ``netns`` (a name under /run/netns) runs the same
thing in another network namespace; the agent leaves it None, tests use their own namespaces.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_interface
from typing import Any

from homecloud.errors import HostError
from homecloud.network.addresses import bridge_mac
from homecloud.network.namespaces import netns_path
from homecloud.network.netlink import rtnl

Address = IPv4Interface | IPv6Interface
# The instance is named by a network namespace (a name under /run/netns) or a process in it.
NetnsTarget = str | int
IFA_F_NODAD = 0x02  # the bridge's IPv6 addresses are ours by construction: usable at once
_LINK_UP = 0x1
BRIDGE_LINK_LOCAL = IPv6Interface("fe80::1/64")
# IFLA_INET6_ADDR_GEN_MODE none: the kernel makes no link-local of its own (we add fe80::1).
_NO_KERNEL_LINK_LOCAL = {"attrs": [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", 1]]}]]}


def _lookup(ipr: Any, name: str) -> Any | None:
    """The link message for ``name``, or None: one RTM_GETLINK (link_lookup and then
    get_links would be two, and pyroute2's CPU time per request is what plumbing costs)."""
    from pyroute2 import NetlinkError

    try:
        links = ipr.link("get", ifname=name)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    return links[0] if links else None


def _made(ipr: Any, name: str) -> Any:
    """The link message for ``name``, which was just made."""
    link = _lookup(ipr, name)
    if link is None:
        raise HostError(f"link {name} vanished right after it was made")
    return link


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def link_exists(name: str, *, netns: str | None = None) -> bool:
    with rtnl(netns) as ipr:
        return bool(ipr.link_lookup(ifname=name))


def _exists_here(name: str) -> bool:
    """Whether our own namespace has a link ``name``: one ioctl, where opening pyroute2's
    socket costs about a millisecond of CPU."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def delete_link(name: str, *, netns: str | None = None) -> bool:
    """Delete ``name`` (a veth takes its peer with it); False if it was not there."""
    from pyroute2 import NetlinkError

    if netns is None and not _exists_here(name):
        return False  # removals mostly find nothing (no tap, no stray peer): no netlink socket
    with rtnl(netns) as ipr:
        indexes = ipr.link_lookup(ifname=name)
        if not indexes:
            return False
        try:
            ipr.link("del", index=indexes[0])
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:  # gone meanwhile
                return False
            raise
        return True


def _sync_addresses(ipr: Any, index: int, wanted: Sequence[Address]) -> None:
    """Make the link's addresses exactly ``wanted``, except link-local ones we did not ask for
    (the kernel's)."""
    present: set[Address] = set()
    for message in ipr.get_addr(index=index):
        present.add(ip_interface(f"{message.get('IFA_ADDRESS')}/{message['prefixlen']}"))
    for address in wanted:
        if address in present:
            continue
        flags = IFA_F_NODAD if address.version == 6 else 0
        ipr.addr("add", index=index, address=str(address.ip),
                 prefixlen=address.network.prefixlen, flags=flags)
    for address in present:
        if address not in wanted and not address.is_link_local:
            ipr.addr("del", index=index, address=str(address.ip),
                     prefixlen=address.network.prefixlen)


def ensure_bridge(name: str, addresses: Sequence[Address] = (), *,
                  netns: str | None = None) -> int:
    """Make bridge ``name`` exist, hold exactly ``addresses`` (plus fe80::1) and be up; return
    its index.

    The bridge keeps one MAC (addresses.bridge_mac) and its IPv6 addresses skip duplicate
    address detection, including its link-local fe80::1 in place of the kernel's: otherwise
    the bridge's first port to come up starts DAD on the bridge and IPv6 through it stalls for
    a second or two (measured), just when the first instance should be reachable.
    """
    with rtnl(netns) as ipr:
        link = _lookup(ipr, name)
        mac = bridge_mac(name)
        if link is None:
            # No STP and no forwarding delay: a new instance's port forwards at once.
            ipr.link("add", ifname=name, kind="bridge", address=mac, br_stp_state=0,
                     br_forward_delay=0)
            link = _made(ipr, name)
        elif _kind(link) != "bridge":
            raise HostError(f"a link named {name} exists and is not a bridge ({_kind(link)}); "
                            "remove it or configure another bridge name")
        index = int(link["index"])
        if link.get("IFLA_ADDRESS") != mac:
            ipr.link("set", index=index, address=mac)
        ipr.link("set", index=index, af_spec=_NO_KERNEL_LINK_LOCAL)
        _sync_addresses(ipr, index, [*addresses, BRIDGE_LINK_LOCAL])
        if not link["flags"] & _LINK_UP:
            ipr.link("set", index=index, state="up")
        return index


def configure_link(name: str, addresses: Sequence[Address], *, netns: str | None = None) -> None:
    """Give ``name`` exactly ``addresses`` and bring it up (the instance's end, in tests)."""
    with rtnl(netns) as ipr:
        link = _lookup(ipr, name)
        if link is None:
            raise HostError(f"link {name} does not exist")
        _sync_addresses(ipr, int(link["index"]), addresses)
        ipr.link("set", index=link["index"], state="up")


@contextmanager
def _target_args(target: NetnsTarget) -> Iterator[dict[str, Any]]:
    """Netlink attributes naming ``target``: a pid, or an open descriptor of the namespace
    (pyroute2 given a name forks a process to open it)."""
    if isinstance(target, int):
        yield {"net_ns_pid": target}
        return
    fd = os.open(netns_path(target), os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield {"net_ns_fd": fd}
    finally:
        os.close(fd)


def ensure_veth(host: str, peer: str, *, bridge: str | None = None,
                target: NetnsTarget | None = None, target_name: str | None = None,
                netns: str | None = None) -> int:
    """Make the veth pair ``host``/``peer``: ``host`` up and attached to ``bridge``, ``peer``
    in ``target`` (named ``target_name`` there). Returns the host end's index.

    A new pair is made with its peer in ``target`` already: moving a link between namespaces
    costs the kernel tens of milliseconds (measured: 15-40 ms), making it there ~2 ms.
    Safe to repeat: an existing pair is completed, not made again (a peer still here after an
    interruption is moved). If anything fails, the pair made by this call is removed.
    """
    from pyroute2 import NetlinkError

    where = f" into {target}" if target is not None else ""

    def failed(exc: BaseException) -> HostError:
        return HostError(f"cannot set up veth {host}/{peer}{where}: "
                         f"{getattr(exc, 'strerror', None) or exc}")

    with rtnl(netns) as ipr:
        master = None
        if bridge is not None:
            bridge_link = _lookup(ipr, bridge)
            if bridge_link is None:
                raise HostError(f"bridge {bridge} does not exist")
            master = int(bridge_link["index"])
        link = _lookup(ipr, host)
        created = False
        if link is not None and _kind(link) != "veth":
            raise HostError(f"a link named {host} exists and is not a veth ({_kind(link)})")
        if link is None:
            if _lookup(ipr, peer) is not None:
                # A peer without its partner is left from an interrupted attempt: start over.
                ipr.link("del", ifname=peer)
            try:
                if target is None:
                    ipr.link("add", ifname=host, kind="veth", peer={"ifname": peer})
                else:
                    with _target_args(target) as there:
                        ipr.link("add", ifname=host, kind="veth",
                                 peer={"ifname": target_name or peer, **there})
            except (NetlinkError, OSError) as exc:  # OSError: no netns of that name
                raise failed(exc) from None
            link = _made(ipr, host)
            created = True
        index = int(link["index"])
        try:
            settings: dict[str, Any] = {"state": "up"}
            if master is not None:
                settings["master"] = master
            ipr.link("set", index=index, **settings)
            if master is not None:
                # Hairpin: an instance reaching itself through a port published on the host
                # comes back out of the port it went in by.
                ipr.brport("set", index=index, mode=1)
            # A pair made here has its peer in the target already; an older one may not.
            peer_link = _lookup(ipr, peer) if target is not None and not created else None
            if target is not None and peer_link is not None:
                with _target_args(target) as there:
                    if target_name:
                        there["ifname"] = target_name
                    ipr.link("set", index=peer_link["index"], **there)
        except (NetlinkError, OSError) as exc:
            if created:
                ipr.link("del", index=index)
            raise failed(exc) from None
        return index


def ensure_tap(name: str, *, bridge: str, netns: str | None = None) -> int:
    """Make the persistent tap ``name`` (a VM's NIC; qemu attaches to it by name), up and a
    port of ``bridge``, with hairpin like a veth's host end. Idempotent; returns its index.
    If attaching fails, a tap made by this call is removed."""
    from pyroute2 import NetlinkError

    with rtnl(netns) as ipr:
        bridge_link = _lookup(ipr, bridge)
        if bridge_link is None:
            raise HostError(f"bridge {bridge} does not exist")
        link = _lookup(ipr, name)
        created = False
        if link is not None and _kind(link) != "tun":
            raise HostError(f"a link named {name} exists and is not a tap ({_kind(link)})")
        if link is None:
            try:
                ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            except (NetlinkError, OSError) as exc:
                raise HostError(f"cannot make tap {name}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None
            link = _made(ipr, name)
            created = True
        index = int(link["index"])
        try:
            ipr.link("set", index=index, master=int(bridge_link["index"]), state="up")
            ipr.brport("set", index=index, mode=1)
        except (NetlinkError, OSError) as exc:
            if created:
                ipr.link("del", index=index)
            raise HostError(f"cannot attach tap {name} to {bridge}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
        return index


def configure_instance_link(name: str, addresses: Sequence[Address],
                            gateways: Sequence[IPv4Address | IPv6Address], *,
                            netns: str) -> None:
    """Inside an instance's namespace ``netns``, in one netlink session: ``name`` holds exactly
    ``addresses`` and is up, loopback is up, and the default routes go via ``gateways``."""
    with rtnl(netns) as ipr:
        loopback = _lookup(ipr, "lo")
        if loopback is not None and not loopback["flags"] & _LINK_UP:
            ipr.link("set", index=loopback["index"], state="up")
        link = _lookup(ipr, name)
        if link is None:
            raise HostError(f"link {name} does not exist in netns {netns}")
        index = int(link["index"])
        _sync_addresses(ipr, index, addresses)
        if not link["flags"] & _LINK_UP:
            ipr.link("set", index=index, state="up")
        for gateway in gateways:
            family = socket.AF_INET if gateway.version == 4 else socket.AF_INET6
            ipr.route("replace", family=family, dst="0.0.0.0/0" if gateway.version == 4
                      else "::/0", gateway=str(gateway), oif=index)


def link_names(*, netns: str | None = None) -> list[str]:
    """Every link's name, here or in ``netns``."""
    with rtnl(netns) as ipr:
        return [str(link.get("ifname")) for link in ipr.get_links()]


def link_addresses(name: str, *, netns: str | None = None) -> list[Address] | None:
    """The addresses on ``name`` (with their prefixes), or None when there is no such link."""
    with rtnl(netns) as ipr:
        link = _lookup(ipr, name)
        if link is None:
            return None
        return [ip_interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
                for m in ipr.get_addr(index=link["index"])]
