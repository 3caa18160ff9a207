"""Reading logs: a unit's own output, and a container guest's journal.

``journalctl`` is used as a subprocess: logs are not a hot path and its output format and
follow mode are exactly what users expect.

Where an instance's logs live:
- ``journalctl -u hc-NAME.service``: what nspawn and (in command mode) the command printed, and
  (in boot mode) the guest's console.
- the guest's own journal: containers run with ``--link-journal=no``, so the guest's systemd
  writes to the dataset's ``/var/log/journal/<machine-id>``; ``journalctl --directory`` reads it
  whether the container runs or not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from homecloud.errors import HomecloudError
from homecloud.tools import run_tool

JOURNALCTL = "journalctl"


def unit_argv(unit: str, lines: int | None = None, *, follow: bool = False,
              invocation: str | None = None) -> list[str]:
    argv = [JOURNALCTL, "--no-pager", "-o", "cat"]
    argv += [f"_SYSTEMD_INVOCATION_ID={invocation}"] if invocation else ["-u", unit]
    if lines is not None:
        argv += ["-n", str(lines)]
    if follow:
        argv.append("-f")
    return argv


def guest_argv(root: Path, lines: int | None = None, *, follow: bool = False) -> list[str]:
    """journalctl over the guest's persistent journal in its root directory ``root``."""
    argv = [JOURNALCTL, "--no-pager", "-o", "short", f"--directory={root / 'var/log/journal'}"]
    if lines is not None:
        argv += ["-n", str(lines)]
    if follow:
        argv.append("-f")
    return argv


def _run(argv: Sequence[str]) -> list[str]:
    try:
        out = run_tool(argv, timeout=10)
    except HomecloudError:  # no journalctl: no lines to show
        return []
    return [line for line in out.stdout.splitlines() if line.strip()]


def unit_lines(unit: str, lines: int = 20, *, invocation: str | None = None) -> list[str]:
    """The last ``lines`` lines a unit printed (of one invocation when given).

    journald reads service output asynchronously: lines written just before the unit died may
    arrive a moment later, so an empty answer is retried briefly.
    """
    argv = unit_argv(unit, lines, invocation=invocation)
    for _ in range(5):
        found = _run(argv)
        if found:
            return found
        time.sleep(0.05)
    return []


def guest_lines(root: Path, lines: int = 20) -> list[str]:
    if not (root / "var/log/journal").is_dir():
        return []
    return _run(guest_argv(root, lines))
