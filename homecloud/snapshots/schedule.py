"""When a policy snapshots: ``--every 15m`` as a systemd calendar in UTC, and its timer unit.

Pure logic. A calendar (not a monotonic interval) in UTC fires at the same instants whatever the
host's time zone and its DST changes; ``Persistent=true`` makes a host that was off run a missed
snapshot once when it comes back, not once per missed run; ``RandomizedDelaySec=`` spreads the
policies of many instances (and hosts) over a little of the interval.
"""

from __future__ import annotations

import re

from homecloud.errors import UserError
from homecloud.snapshots.retention import Keep

MINUTE, HOUR, DAY, WEEK = 60, 3600, 86400, 7 * 86400
_UNITS = {"s": 1, "m": MINUTE, "min": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
_EVERY_RE = re.compile(r"(\d+)\s*(s|m|min|h|d|w)")
# The interval a policy snapshots at when none is given: the period of its finest tier.
TIER_PERIODS = {"minutely": MINUTE, "hourly": HOUR, "daily": DAY, "weekly": WEEK,
                "monthly": DAY, "yearly": DAY}
POLICY_UNIT_PREFIX = "hc-policy@"
SNAPSHOT_PREFIX = "auto-"  # the names of a policy's snapshots: only those does it prune


def parse_every(text: str) -> int:
    """``"15m"``, ``"1h"``, ``"1d"``, ``"1w"`` as seconds; a calendar needs an interval that
    divides the next larger unit, so every run falls on the same clock positions."""
    match = _EVERY_RE.fullmatch(text.strip())
    if not match:
        raise UserError(f"--every {text!r} is not an interval: write e.g. 1m, 15m, 1h, 6h, "
                        "1d or 1w")
    count, unit = int(match.group(1)), _UNITS[match.group(2)]
    seconds = count * unit
    if seconds < MINUTE:
        raise UserError(f"--every {text}: policies snapshot at most once a minute")
    if seconds < HOUR and (seconds % MINUTE or HOUR % seconds):
        raise UserError(f"--every {text}: use a number of minutes that divides an hour "
                        "(1, 2, 5, 10, 15, 20, 30) or whole hours")
    if HOUR <= seconds < DAY and (seconds % HOUR or DAY % seconds):
        raise UserError(f"--every {text}: use a number of hours that divides a day "
                        "(1, 2, 3, 4, 6, 8, 12) or 1d")
    if seconds > DAY and seconds != WEEK:
        raise UserError(f"--every {text}: use 1d or 1w for intervals of a day or more")
    return seconds


def default_every(keep: Keep) -> int:
    return min(TIER_PERIODS[tier] for tier, count in keep.counts.items() if count)


def format_every(seconds: int) -> str:
    for suffix, unit in (("w", WEEK), ("d", DAY), ("h", HOUR)):
        if seconds % unit == 0:
            return f"{seconds // unit}{suffix}"
    return f"{seconds // MINUTE}m"


def on_calendar(seconds: int) -> str:
    """The ``OnCalendar=`` expression, in UTC, for an interval ``parse_every`` accepted."""
    if seconds == WEEK:
        return "Mon *-*-* 00:00:00 UTC"
    if seconds == DAY:
        return "*-*-* 00:00:00 UTC"
    if seconds % HOUR == 0:
        return f"*-*-* 00/{seconds // HOUR}:00:00 UTC"
    return f"*-*-* *:00/{seconds // MINUTE}:00 UTC"


def randomized_delay(seconds: int) -> int:
    """A tenth of the interval, at most five minutes."""
    return min(seconds // 10, 300)


def timer_unit(instance: str) -> str:
    return f"{POLICY_UNIT_PREFIX}{instance}.timer"


def service_unit(instance: str) -> str:
    return f"{POLICY_UNIT_PREFIX}{instance}.service"


def render_timer(instance: str, every: int) -> str:
    """The timer of ``instance``'s policy; it starts ``hc-policy@INSTANCE.service``."""
    return (f"[Unit]\nDescription=homecloud snapshot policy of {instance} "
            f"(every {format_every(every)})\n\n"
            f"[Timer]\nOnCalendar={on_calendar(every)}\nPersistent=true\n"
            f"RandomizedDelaySec={randomized_delay(every)}s\nAccuracySec=1s\n\n"
            "[Install]\nWantedBy=timers.target\n")
