"""Parsers built only as far as the command line reaches.

`hc snapshot create web` needs three parsers (hc, snapshot, create), not the sixty of every
command: building one costs argparse a formatter and a dozen gettext catalog look-ups, so all
of them cost about as much as the interpreter's own start-up. The CLI modules declare their commands
as usual; at each level of sub-commands, ``NamedCommands`` builds the parser of the word the
command line gives and skips the others. With no word at a level (``hc --help``, ``hc
snapshot``), every parser of that level is built, for the listing, but nothing below them. A
word that names none of them (a typo) gets them all built afterwards, so argparse's error lists
every choice.
"""

from __future__ import annotations

import argparse
import os
import sys

from homecloud.errors import EXIT_USAGE

# `typing` and `collections.abc` cost `hc` start-up time; only the type checker reads them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def terminal_columns() -> int:
    """What shutil.get_terminal_size() says, without importing shutil (and with it bz2, lzma
    and fnmatch) on every start: argparse asks once per argument declared."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Width:
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,  # type: ignore[call-arg]
                         terminal_columns() - 2 if width is None else width)


class Formatter(_Width, argparse.HelpFormatter):
    pass


class RawDescriptionFormatter(_Width, argparse.RawDescriptionHelpFormatter):
    pass


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that exits with hc's usage status and builds, under itself, only the
    sub-command parsers the command line reaches (``words``: the words after its own; None:
    all of them)."""

    def __init__(self, *args: Any, words: Sequence[str] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)
        self.words = words
        self.reached = True  # False: the command line ends above this parser's sub-commands
        self.levels: list[NamedCommands] = []  # shared by every parser under the first

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)

    def add_subparsers(self, **kwargs: Any) -> Any:
        if not self.reached:
            return _SkippedCommands()
        real = super().add_subparsers(**kwargs)
        if self.words is None:
            return real
        level = NamedCommands(real, self.words, self.levels)
        self.levels.append(level)
        return level

    def complete(self) -> None:
        """Build what a word naming no command left out; call once every command is declared."""
        for level in self.levels:
            level.complete()


class NamedCommands:
    """A level of sub-commands that builds the parser of the command line's next word only."""

    def __init__(self, real: Any, words: Sequence[str], levels: list[NamedCommands]) -> None:
        self._real = real
        self._levels = levels
        index = next((i for i, word in enumerate(words) if not word.startswith("-")), None)
        self.word = None if index is None else words[index]
        self._after = () if index is None else tuple(words[index + 1:])
        self._matched = False
        self._skipped: list[tuple[str, dict[str, Any]]] = []

    @property
    def required(self) -> bool:
        return bool(self._real.required)

    @required.setter
    def required(self, value: bool) -> None:
        self._real.required = value

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.word is None:
            return self._build(name, kwargs, reached=False)
        if self.word in (name, *kwargs.get("aliases", ())):
            self._matched = True
            parser = self._build(name, kwargs, reached=True)
            parser.words = self._after
            return parser
        self._skipped.append((name, kwargs))
        return _SkippedParser()

    def complete(self) -> None:
        if self.word is not None and not self._matched:
            for name, kwargs in self._skipped:
                self._build(name, kwargs, reached=False)
        self._skipped = []

    def _build(self, name: str, kwargs: dict[str, Any], reached: bool) -> Parser:
        parser: Parser = self._real.add_parser(name, **kwargs)
        parser.reached = reached
        parser.levels = self._levels
        return parser


class _SkippedParser:
    """Stands for a parser the command line does not reach: takes its declarations, keeps none."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        return None

    def add_argument_group(self, *args: Any, **kwargs: Any) -> _SkippedParser:
        return self

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> _SkippedParser:
        return self

    def set_defaults(self, **kwargs: Any) -> None:
        return None

    def add_subparsers(self, **kwargs: Any) -> _SkippedCommands:
        return _SkippedCommands()


class _SkippedCommands:
    required = False

    def add_parser(self, name: str, **kwargs: Any) -> _SkippedParser:
        return _SkippedParser()
