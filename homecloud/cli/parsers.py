"""Declaring sub-commands: the shape most of them share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def listing_command(commands: Any, name: str, run: Callable[[argparse.Namespace], int], *,
                    help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command that prints data: a table, or JSON with ``--json``."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help,
                                                          description=description or help)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)
    return parser
