"""Retention (homecloud.snapshots.retention): counts per tier in UTC, anchored to the newest
snapshot, with the clock moved every way a host's clock moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from homecloud.errors import UserError
from homecloud.snapshots.retention import Keep, evaluate, parse_keep

HOUR = 3600.0
DAY = 24 * HOUR
START = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
FULL = parse_keep("hourly=24 daily=7 weekly=4 monthly=12 yearly=2")


def series(start: float, step: float, count: int, prefix: str = "s") -> list[tuple[str, float]]:
    return [(f"{prefix}{i:06d}", start + i * step) for i in range(count)]


def kept(snaps: list[tuple[str, float]], keep: Keep, protected: tuple[str, ...] = ()
         ) -> set[str]:
    decision = evaluate(snaps, keep, protected)
    assert set(decision.keep) | set(decision.prune) == {n for n, _ in snaps}
    assert not set(decision.keep) & set(decision.prune)
    return set(decision.keep)


def test_parse_keep_reads_tiers_and_prints_them_back() -> None:
    assert str(FULL) == "hourly=24 daily=7 weekly=4 monthly=12 yearly=2"
    assert parse_keep("daily=7,hourly=3").counts == {"daily": 7, "hourly": 3}


@pytest.mark.parametrize(("text", "message"), [
    ("", "--keep is empty"),
    ("daily=-1", "daily=-1 is not a count"),
    ("daily=seven", "daily=seven is not a count"),
    ("daily=1.5", "daily=1.5 is not a count"),
    ("daily=99999999", "is not a count"),
    ("fortnightly=2", "unknown tier 'fortnightly'"),
    ("daily", "'daily' is not TIER=COUNT"),
    ("daily=1 daily=2", "daily is given twice"),
    ("daily=0 hourly=0", "keeps nothing"),
])
def test_nonsense_counts_are_refused(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        parse_keep(text)


def test_each_tier_keeps_its_count_of_the_most_recent_buckets() -> None:
    # Every 15 minutes for 20 days.
    snaps = series(START, 900, 20 * 96)
    keep = kept(snaps, parse_keep("hourly=24 daily=7"))
    newest = snaps[-1][1]
    hours = {int(t // HOUR) for n, t in snaps if n in keep and newest - t < 24 * HOUR}
    assert len(hours) == 24
    # 24 hourlies (one is also a daily), 7 dailies, the newest.
    assert len(keep) == 24 + 7 - 1 + 1
    # The oldest snapshot of each of the last 7 UTC days is kept.
    for day in range(13, 20):
        assert f"s{day * 96:06d}" in keep


def test_a_host_off_for_a_week_keeps_as_many_as_one_always_on() -> None:
    """Downtime never thins history: buckets are counted back from the newest snapshot."""
    before = series(START, HOUR, 10 * 24, "a")
    after = series(START + 17 * DAY, HOUR, 3, "b")  # back after a week off, 3 hourlies since
    keep = kept(before + after, FULL)
    hourlies = [n for n, why in evaluate(before + after, FULL).keep.items() if "hourly" in why]
    assert len(hourlies) == 24  # 3 new ones and 21 from before the week off
    assert {"b000000", "b000001", "b000002"} <= keep
    assert "a000239" in keep and "a000219" in keep


def test_the_clock_going_backwards_prunes_nothing_more() -> None:
    """A clock set back an hour gives new snapshots earlier times than old ones: nothing is
    pruned that a steady clock would have kept, and the decision does not read the clock."""
    snaps = series(START, HOUR, 48)
    steady = kept(snaps, FULL)
    jumped = [*snaps, ("late1", snaps[-1][1] - HOUR + 60), ("late2", snaps[-1][1] - HOUR + 120)]
    keep = kept(jumped, FULL)
    assert steady <= keep | {snaps[-1][0]}
    assert snaps[-1][0] in keep  # the newest by creation time is still kept


def test_snapshots_of_one_second_count_in_the_order_they_were_made() -> None:
    """Times in whole seconds tie: the one made later is the newer, whatever its name."""
    decision = evaluate([("s2", START), ("s1", START)], parse_keep("yearly=1"))
    assert decision.keep == {"s1": ["newest"], "s2": ["yearly"]}


def test_dst_changes_in_the_hosts_time_zone_change_nothing() -> None:
    """Snapshots taken every 15 minutes of local wall time across Europe/Berlin's spring and
    autumn changes: tiers count UTC hours and days, so each kept hourly is a distinct UTC
    hour and no local hour is kept twice or skipped."""
    berlin = ZoneInfo("Europe/Berlin")
    for day in (datetime(2026, 3, 29), datetime(2026, 10, 25)):
        start = day.replace(tzinfo=berlin) - timedelta(hours=12)
        utc_start = start.astimezone(UTC).timestamp()
        snaps = series(utc_start, 900, 24 * 4)  # every 15 real minutes, across the change
        decision = evaluate(snaps, parse_keep("hourly=24"))
        hourly = [n for n, why in decision.keep.items() if "hourly" in why]
        times = dict(snaps)
        assert len(hourly) == 24
        assert len({int(times[n] // HOUR) for n in hourly}) == 24
        assert len(decision.prune) == 24 * 4 - 24 - 1  # and the newest


def test_a_replication_base_is_never_pruned() -> None:
    snaps = series(START, HOUR, 100)
    decision = evaluate(snaps, parse_keep("hourly=2"), protected=("s000003",))
    assert decision.keep["s000003"] == ["replication base"]
    assert "s000003" not in decision.prune


def test_the_newest_is_kept_and_an_empty_list_is_fine() -> None:
    assert evaluate([], FULL).keep == {}
    assert "newest" in evaluate([("only", START)], parse_keep("yearly=1")).keep["only"]


def test_prune_lists_oldest_first() -> None:
    decision = evaluate(series(START, HOUR, 10), parse_keep("hourly=2"))
    assert decision.prune == [f"s{i:06d}" for i in range(8)]
