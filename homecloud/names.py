"""Validation of the names users give to images, instances, pools and snapshots.

Names become dataset paths, unit names and (for instances) DNS labels, so they are checked once,
here, before anything is created.
"""

from __future__ import annotations

import re

from homecloud.errors import UserError

MAX_NAME = 63
# A letter or digit first, then letters, digits, '.', '_' or '-'. No '/', no spaces, no control
# characters; '..' is refused separately.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Instances become DNS labels and systemd unit names: stricter.
_INSTANCE_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _describe(name: str) -> str:
    return repr(name) if name.isprintable() else ascii(name)


def _check_length(name: str, what: str) -> None:
    if not name:
        raise UserError(f"{what} must not be empty")
    if len(name) > MAX_NAME:
        raise UserError(f"{what} {_describe(name[:20] + '...')} is too long "
                        f"({len(name)} characters, at most {MAX_NAME})")


def validate_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a valid image, pool or snapshot name; raise UserError if not."""
    _check_length(name, what)
    if ".." in name:
        raise UserError(f"{what} {_describe(name)} must not contain '..'")
    if not _NAME_RE.fullmatch(name):
        raise UserError(f"{what} {_describe(name)} is invalid: use letters, digits, '.', '_' "
                        "and '-', starting with a letter or digit")
    return name


def validate_instance_name(name: str) -> str:
    """Instance names are DNS labels: lower-case letters, digits and inner '-'."""
    _check_length(name, "instance name")
    if not _INSTANCE_RE.fullmatch(name):
        raise UserError(f"instance name {_describe(name)} is invalid: use lower-case letters, "
                        "digits and '-', not starting or ending with '-'")
    return name


def dns_label(text: str, what: str) -> str:
    """``text`` lower-cased if it is a DNS label (host names, domain parts); raise UserError if
    not."""
    label = text.lower()
    if not _DNS_LABEL_RE.fullmatch(label):
        raise UserError(f"{what} {_describe(text)} is not a DNS label: use letters, digits and "
                        "inner '-', at most 63 characters")
    return label
