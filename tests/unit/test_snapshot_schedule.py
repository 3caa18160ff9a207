"""When policies run (homecloud.snapshots.schedule): --every as a UTC calendar, and the timer
unit written for it."""

from __future__ import annotations

import pytest

from homecloud.errors import UserError
from homecloud.snapshots.retention import parse_keep
from homecloud.snapshots.schedule import (
    default_every,
    format_every,
    on_calendar,
    parse_every,
    randomized_delay,
    render_timer,
)


@pytest.mark.parametrize(("text", "seconds", "calendar"), [
    ("1m", 60, "*-*-* *:00/1:00 UTC"),
    ("15m", 900, "*-*-* *:00/15:00 UTC"),
    ("60m", 3600, "*-*-* 00/1:00:00 UTC"),
    ("1h", 3600, "*-*-* 00/1:00:00 UTC"),
    ("6h", 6 * 3600, "*-*-* 00/6:00:00 UTC"),
    ("24h", 86400, "*-*-* 00:00:00 UTC"),
    ("1d", 86400, "*-*-* 00:00:00 UTC"),
    ("1w", 7 * 86400, "Mon *-*-* 00:00:00 UTC"),
    ("120s", 120, "*-*-* *:00/2:00 UTC"),
])
def test_intervals_become_utc_calendars(text: str, seconds: int, calendar: str) -> None:
    assert parse_every(text) == seconds
    assert on_calendar(seconds) == calendar


@pytest.mark.parametrize(("text", "message"), [
    ("30s", "at most once a minute"),
    ("0m", "at most once a minute"),
    ("90s", "divides an hour"),
    ("7m", "divides an hour"),
    ("90m", "divides a day"),
    ("5h", "divides a day"),
    ("2d", "1d or 1w"),
    ("soon", "is not an interval"),
    ("-5m", "is not an interval"),
    ("", "is not an interval"),
])
def test_nonsense_intervals_are_refused(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_every(text)


def test_the_default_interval_is_the_finest_tiers_period() -> None:
    assert default_every(parse_keep("hourly=24 daily=7")) == 3600
    assert default_every(parse_keep("daily=7 monthly=3")) == 86400
    assert default_every(parse_keep("minutely=0 weekly=4")) == 7 * 86400
    assert format_every(900) == "15m" and format_every(86400) == "1d"


def test_the_timer_is_persistent_randomised_and_enabled_for_timers_target() -> None:
    text = render_timer("web", 900)
    assert "OnCalendar=*-*-* *:00/15:00 UTC\n" in text
    assert "Persistent=true\n" in text  # a host that was off runs a missed snapshot once
    assert "RandomizedDelaySec=90s\n" in text
    assert "WantedBy=timers.target\n" in text
    assert randomized_delay(7 * 86400) == 300
