"""Declaring sub-commands: the shape most of them share."""

from __future__ import annotations

import argparse

# `typing` and `collections.abc` cost `hc` start-up time; only the type checker reads them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def progress_options(parser: argparse.ArgumentParser) -> None:
    """``-q`` and ``--progress`` for a command that shows its progress: on a terminal by
    default, never in scripts (stderr then says nothing unless something fails)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("--progress", action="store_true",
                        help="show progress even when stderr is not a terminal")


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress for ``args`` (of a command with progress_options)."""
    import sys

    if args.progress:
        return True
    return not (args.quiet or getattr(args, "json", False)) and sys.stderr.isatty()


def listing_command(commands: Any, name: str, run: Callable[[argparse.Namespace], int], *,
                    help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command that prints data: a table, or JSON with ``--json``."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help,
                                                          description=description or help)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)
    return parser


def logs_command(commands: Any, run: Callable[[argparse.Namespace], int], *, help: str,
                 lines: int) -> argparse.ArgumentParser:
    """``logs [-f] [-n LINES] NAME``: the last lines of something's log, or follow it."""
    parser: argparse.ArgumentParser = commands.add_parser("logs", help=help)
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("-n", "--lines", type=int, default=lines,
                        help=f"how many lines (default {lines})")
    parser.add_argument("name")
    parser.set_defaults(run=run)
    return parser
