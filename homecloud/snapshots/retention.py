"""Which snapshots a policy keeps: counts per tier, in UTC, anchored to the newest snapshot.

Pure logic: it reads the snapshots' own creation times and nothing else, not their names and
not the clock. Each tier (hourly, daily, ...) cuts time into buckets of UTC calendar periods and
keeps, for each of the ``count`` most recent buckets that hold a snapshot, that bucket's oldest
snapshot (the oldest, so the choice never changes once made). Buckets are counted back from the
newest snapshot, not from now: a host that was off for a week keeps as many hourlies as one
that never stopped, and a clock set back prunes nothing it would not have pruned before.

A snapshot a replication target still needs as the base of its next incremental stream is
kept whatever the counts say, and so is the newest one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from homecloud.errors import UserError

Bucket = Callable[[float], tuple[int, ...]]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _week(ts: float) -> tuple[int, ...]:
    year, week, _ = _utc(ts).isocalendar()
    return (year, week)


# Finest first; the buckets of each tier, from a creation time (seconds since the epoch, UTC).
TIERS: Mapping[str, Bucket] = {
    "minutely": lambda ts: (int(ts // 60),),
    "hourly": lambda ts: (int(ts // 3600),),
    "daily": lambda ts: (_utc(ts).toordinal(),),
    "weekly": _week,
    "monthly": lambda ts: (_utc(ts).year, _utc(ts).month),
    "yearly": lambda ts: (_utc(ts).year,),
}
MAX_COUNT = 100_000
_ITEM_RE = re.compile(r"([a-z]+)=(\S+)")


@dataclass(frozen=True)
class Keep:
    """How many buckets of each tier to keep (tiers not named keep none)."""

    counts: Mapping[str, int]

    def __str__(self) -> str:
        return " ".join(f"{tier}={self.counts[tier]}" for tier in TIERS if tier in self.counts)


def parse_keep(text: str) -> Keep:
    """``"hourly=24 daily=7 weekly=4 monthly=12 yearly=2"`` (spaces or commas between)."""
    counts: dict[str, int] = {}
    items = [item for item in re.split(r"[\s,]+", text.strip()) if item]
    if not items:
        raise UserError("--keep is empty: give counts per tier, e.g. "
                        "\"hourly=24 daily=7 weekly=4 monthly=12 yearly=2\"")
    for item in items:
        match = _ITEM_RE.fullmatch(item)
        if not match:
            raise UserError(f"--keep: {item!r} is not TIER=COUNT (e.g. daily=7)")
        tier, value = match.groups()
        if tier not in TIERS:
            raise UserError(f"--keep: unknown tier {tier!r} (use: {', '.join(TIERS)})")
        if tier in counts:
            raise UserError(f"--keep: {tier} is given twice")
        if not value.isdigit() or int(value) > MAX_COUNT:
            raise UserError(f"--keep: {tier}={value} is not a count: use a whole number "
                            f"from 0 to {MAX_COUNT}")
        counts[tier] = int(value)
    if not any(counts.values()):
        raise UserError("--keep keeps nothing: give at least one tier a count above 0")
    return Keep(counts)


@dataclass(frozen=True)
class Decision:
    """For each snapshot kept, why (tier names, "newest", "replication base")."""

    keep: dict[str, list[str]] = field(default_factory=dict)
    prune: list[str] = field(default_factory=list)  # oldest first


def evaluate(snapshots: Iterable[tuple[str, float]], keep: Keep,
             protected: Collection[str] = ()) -> Decision:
    """Decide which of ``snapshots`` (name, creation time; in the order they were made) to
    keep; ``protected``: names a replication target still needs."""
    # Times in whole seconds tie: the one made later counts as the newer.
    made = list(snapshots)
    newest_first = [made[at] for at in sorted(range(len(made)), key=lambda at: (made[at][1], at),
                                              reverse=True)]
    reasons: dict[str, list[str]] = {}
    if newest_first:
        reasons[newest_first[0][0]] = ["newest"]
    for tier, bucket_of in TIERS.items():
        count = keep.counts.get(tier, 0)
        if not count:
            continue
        # Walking newest to oldest, the last snapshot seen in a bucket is its oldest.
        chosen: dict[tuple[int, ...], str] = {}
        for name, created in newest_first:
            bucket = bucket_of(created)
            if bucket not in chosen and len(chosen) == count:
                break
            chosen[bucket] = name
        for name in chosen.values():
            reasons.setdefault(name, []).append(tier)
    for name, _ in newest_first:
        if name in protected:
            reasons.setdefault(name, []).append("replication base")
    prune = [name for name, _ in reversed(newest_first) if name not in reasons]
    return Decision(keep=reasons, prune=prune)
