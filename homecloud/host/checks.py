"""What a check of `hc doctor` is: a function returning one line when all is well, raising
Failed (with the fix) or Skipped otherwise; run_check turns either into a Check.

Kept light, as the CLI imports it: what a check needs it imports itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | fail | skipped
    detail: str
    fix: str | None = None


class Failed(Exception):
    """A check's failure: what is wrong, and how to fix it."""

    def __init__(self, detail: str, fix: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


class Skipped(Exception):
    """A check that cannot run here, and why."""


def run_check(name: str, check: Callable[[], str]) -> Check:
    from homecloud.errors import HomecloudError

    try:
        return Check(name, "ok", check())
    except Failed as failed:
        return Check(name, "fail", failed.detail, failed.fix)
    except Skipped as skipped:
        return Check(name, "skipped", str(skipped))
    except HomecloudError as exc:
        return Check(name, "fail", exc.message)
    except OSError as exc:
        return Check(name, "fail", f"{type(exc).__name__}: {exc}")


def needs_root() -> None:
    if os.geteuid() != 0:
        raise Skipped("needs root: run `sudo hc doctor`")
