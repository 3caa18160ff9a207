"""homecloud's own systemd units: everything it installs that is not an instance.

Instances run as ``hc-NAME.service`` (and a lambda also as ``hc-NAME.socket``), so the names of
these units are not free for instances, and reconcile must not take them for an instance's.
One list, read by the instance names' check, reconcile, the host set-up and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

AGENT_SOCKET_UNIT = "hcd.socket"
AGENT_UNIT = "hcd.service"
AGENT_DOOR_SOCKET_UNIT = "hcd-door.socket"  # the agent's API for the front door alone
DNS_UNIT = "hc-dns.service"
DOOR_UNIT = "hc-frontdoor.service"
AUTH_SOCKET_UNIT = "hc-frontdoor-auth.socket"
AUTH_UNIT = "hc-frontdoor-auth.service"
WAKE_SOCKET_UNIT = "hc-wake.socket"
WAKE_UNIT = "hc-wake.service"
CONSOLE_SOCKET_UNIT = "hc-console.socket"
CONSOLE_UNIT = "hc-console.service"
PROVISION_UNIT = "hc-provision.service"
DHCP_UNIT = "hc-dhcp.service"


@dataclass(frozen=True)
class OwnService:
    name: str  # the instance name its units would take
    what: str
    units: tuple[str, ...]


SERVICES = (
    OwnService("dns", "homecloud's DNS server", (DNS_UNIT,)),
    OwnService("frontdoor", "homecloud's front door", (DOOR_UNIT,)),
    OwnService("frontdoor-auth", "the front door's logins", (AUTH_SOCKET_UNIT, AUTH_UNIT)),
    OwnService("wake", "the wake listener of sleeping instances", (WAKE_SOCKET_UNIT, WAKE_UNIT)),
    OwnService("console", "the browser consoles' proxy", (CONSOLE_SOCKET_UNIT, CONSOLE_UNIT)),
    OwnService("provision", "network boot's HTTP server", (PROVISION_UNIT,)),
    OwnService("dhcp", "network boot's DHCP server", (DHCP_UNIT,)),
)
# In the order the host set-up installs them (sockets before what they start).
UNITS = (AGENT_SOCKET_UNIT, AGENT_UNIT, DNS_UNIT, DOOR_UNIT, AUTH_SOCKET_UNIT, AUTH_UNIT,
         AGENT_DOOR_SOCKET_UNIT, WAKE_SOCKET_UNIT, WAKE_UNIT, CONSOLE_SOCKET_UNIT, CONSOLE_UNIT,
         PROVISION_UNIT, DHCP_UNIT)
# Units named like an instance's (hc-*) that belong to homecloud itself.
OWN_UNITS = frozenset(unit for service in SERVICES for unit in service.units)
RESERVED_NAMES = {service.name: f"{service.what} runs as {service.units[-1]}"
                  for service in SERVICES}
