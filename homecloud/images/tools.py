"""What image building asks of the tools it runs (homecloud/tools.py runs them)."""

from __future__ import annotations

from collections.abc import Sequence

from homecloud.storage.failures import NO_SPACE_TEXT


def mentions_full_disk(lines: Sequence[str]) -> bool:
    return any(NO_SPACE_TEXT in line for line in lines)
