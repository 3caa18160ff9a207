"""Names of the links homecloud makes: they must fit Linux's 15 characters (IFNAMSIZ - 1) for
any instance name up to 63 characters, so they are derived, never truncated.

A link name is a 3-character prefix saying what it is plus 12 base32 characters (60 bits) of a
hash of the instance name: ``hcv`` the host end of a container's veth, ``hcp`` its peer while it
is still on the host, ``hct`` a VM's tap. 60 bits make a collision between two instance names a
one-in-a-billion event even with a million instances.
"""

from __future__ import annotations

import base64
import hashlib
import re

from homecloud.errors import UserError

IFNAMSIZ = 16  # including the terminating NUL
MAX_IFNAME = IFNAMSIZ - 1
DEFAULT_BRIDGE = "hc0"
VETH_HOST_PREFIX = "hcv"
VETH_PEER_PREFIX = "hcp"
TAP_PREFIX = "hct"
_HASH_CHARS = MAX_IFNAME - 3
# Derived link names; a bridge named like one could collide with an instance's link.
_DERIVED_RE = re.compile(rf"(?:{VETH_HOST_PREFIX}|{VETH_PEER_PREFIX}|{TAP_PREFIX})[a-z2-7]*")
_BRIDGE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
# Names the kernel or iproute2 give a meaning to (sysctl directories, `ip link` keywords).
_RESERVED = frozenset({"all", "default", "lo", "dev", "help", "type"})


def _hashed(prefix: str, instance: str) -> str:
    digest = hashlib.sha256(f"homecloud/ifname\0{instance}".encode()).digest()
    return prefix + base64.b32encode(digest).decode("ascii").lower()[:_HASH_CHARS]


def veth_host_name(instance: str) -> str:
    """The host end of the instance's veth pair, attached to the bridge."""
    return _hashed(VETH_HOST_PREFIX, instance)


def veth_peer_name(instance: str) -> str:
    """The instance end of the veth pair while it is still on the host (it is renamed when moved
    into the instance)."""
    return _hashed(VETH_PEER_PREFIX, instance)


def tap_name(instance: str) -> str:
    """A VM's tap device."""
    return _hashed(TAP_PREFIX, instance)


def validate_bridge_name(name: str) -> str:
    """Return ``name`` if it can be homecloud's bridge; raise a one-line UserError if not."""
    shown = repr(name) if name.isprintable() else ascii(name)
    if not name:
        raise UserError("bridge name must not be empty")
    if len(name) > MAX_IFNAME:
        raise UserError(f"bridge name {shown} is too long ({len(name)} characters, Linux allows "
                        f"at most {MAX_IFNAME})")
    if not _BRIDGE_RE.fullmatch(name):
        raise UserError(f"bridge name {shown} is invalid: use letters, digits, '_', '.' and "
                        "'-', starting with a letter")
    if name.lower() in _RESERVED:
        raise UserError(f"bridge name {shown} is reserved by Linux; choose another, like "
                        f"{DEFAULT_BRIDGE}")
    if _DERIVED_RE.fullmatch(name):
        raise UserError(f"bridge name {shown} looks like the names homecloud gives instance "
                        f"links ({VETH_HOST_PREFIX}..., {VETH_PEER_PREFIX}..., {TAP_PREFIX}...); "
                        "choose another")
    return name
