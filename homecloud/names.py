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
# Names that become a machine's host name: letters, digits, '-' and '.', no '_'.
_HOST_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
# The same rules for the API's description (OpenAPI patterns of path parameters).
NAME_PATTERN = _NAME_RE.pattern
INSTANCE_NAME_PATTERN = _INSTANCE_RE.pattern


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


def _check_pattern(name: str, what: str, pattern: re.Pattern[str], rule: str) -> str:
    if not pattern.fullmatch(name):
        raise UserError(f"{what} {_describe(name)} is invalid: {rule}")
    return name


def validate_instance_name(name: str) -> str:
    """Instance names are DNS labels: lower-case letters, digits and inner '-'."""
    _check_length(name, "instance name")
    return _check_pattern(name, "instance name", _INSTANCE_RE, "use lower-case letters, "
                          "digits and '-', not starting or ending with '-'")


def validate_host_name(name: str, what: str = "host name") -> str:
    """A valid name (validate_name) that can also be a machine's host name."""
    validate_name(name, what)
    return _check_pattern(name, what, _HOST_NAME_RE, "it becomes a host name, so use letters, "
                          "digits, '-' and '.', not starting or ending with '-' or '.'")


def dns_label(text: str, what: str) -> str:
    """``text`` lower-cased if it is a DNS label (host names, domain parts); raise UserError if
    not."""
    label = text.lower()
    if not _DNS_LABEL_RE.fullmatch(label):
        raise UserError(f"{what} {_describe(text)} is not a DNS label: use letters, digits and "
                        "inner '-', at most 63 characters")
    return label
