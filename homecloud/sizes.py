"""Human sizes ("512M", "20G") to bytes and back."""

from __future__ import annotations

import re

from homecloud.errors import UserError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SECONDS_RE = re.compile(r"(\d+(?:\.\d+)?)([a-z]*)")
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?", re.IGNORECASE)


def parse_size(text: str | int, what: str = "size") -> int:
    """Parse a size with an optional binary suffix (K, M, G, T; KiB/KB accepted as the same)."""
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE_RE.fullmatch(text.strip())
        if not match:
            raise UserError(f"{what} {text!r} is not a size: use a number with an optional "
                            "K, M, G or T suffix, like 512M")
        value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value <= 0:
        raise UserError(f"{what} {text!r} must be greater than zero")
    return value


def format_size(value: int) -> str:
    """Format bytes the way `ls -h` would: 1.5G, 512M, 20K."""
    size = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(size) < 1024 or unit == "T":
            if unit == "B":
                return f"{int(size)}B"
            return f"{size:.1f}{unit}" if size < 10 else f"{size:.0f}{unit}"
        size /= 1024
    return f"{size:.0f}P"


def parse_seconds(text: str, units: dict[str, float]) -> float | None:
    """``text`` as a number with one of ``units`` (its seconds; a bare number is seconds), or
    None when it is not one: each option says itself which units it takes and why not."""
    match = _SECONDS_RE.fullmatch(text.strip().lower())
    if not match or (match.group(2) and match.group(2) not in units):
        return None
    return float(match.group(1)) * units.get(match.group(2), 1)
