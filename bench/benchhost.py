"""The dev host a benchmark measures in: one named by the user (running, left running), or the
benchmark's own, booted for the run and removed after it unless asked to keep it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from homecloud import devhost as devhosts
from homecloud.errors import HomecloudError

G = TypeVar("G")
Result = dict[str, Any]


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


@contextmanager
def bench_devhost(name: str | None, own_name: str, keep: bool,
                  progress: Callable[[str], None] = log) -> Iterator[devhosts.DevHost]:
    """``name``: a running dev host to use as it is; None: boot ``own_name`` for this run.
    Raises HomecloudError (NotFound, HostError) when the named one is missing or stopped."""
    if name is not None:
        host = devhosts.get(name)
        if not host.running:
            raise host.not_running()
        yield host
        return
    host = devhosts.boot(own_name, progress=progress)
    try:
        yield host
    finally:
        if keep:
            progress(f"leaving dev host {own_name} running (--keep): `hc-devhost down "
                     f"{own_name}`")
        else:
            progress(f"removing dev host {own_name}")
            devhosts.shutdown(own_name)


def devhost_arguments(parser: argparse.ArgumentParser, own_name: str) -> None:
    """--devhost, --keep and --json, as every benchmark that measures in a dev host has them."""
    parser.add_argument("--devhost", metavar="NAME",
                        help="measure in this running dev host (left running) instead of "
                        f"booting {own_name}")
    parser.add_argument("--keep", action="store_true",
                        help=f"leave the dev host {own_name} running afterwards")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def parse_root_arguments(parser: argparse.ArgumentParser, counter: str) -> argparse.Namespace:
    """The arguments, refusing to go on without root (dev hosts) or with ``counter`` (the
    repetitions option's name, e.g. "reps") below 1."""
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (dev hosts)")
    if getattr(args, counter) < 1:
        parser.error(f"--{counter} must be at least 1")
    return args


@contextmanager
def cleaned(guest: G, clean: Callable[[G], None]) -> Iterator[G]:
    """``guest`` with what an interrupted run left removed before the measurement, and what this
    one made removed after it, even when it fails."""
    clean(guest)
    try:
        yield guest
    finally:
        clean(guest)


def measure_and_print(tool: str, args: argparse.Namespace, own_name: str,
                      measure: Callable[[devhosts.DevHost], Result],
                      show: Callable[[Result], None]) -> int:
    """Run ``measure`` in the dev host the arguments name (or the benchmark's own), then print
    its result with ``show`` or, with --json, as JSON. A failure is one line and its exit code."""
    try:
        with bench_devhost(args.devhost, own_name, args.keep) as host:
            result = measure(host)
            result["devhost"] = host.name
    except HomecloudError as exc:
        print(f"{tool}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show(result)
    return 0
