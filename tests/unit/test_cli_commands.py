"""`hc WORD` builds only the parsers of the module that owns WORD; the table says which."""

from __future__ import annotations

import argparse
import importlib

import pytest

from homecloud.cli.main import COMMAND_MODULES, MODULES, build_parser, main


def words_of(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    importlib.import_module(f"homecloud.cli.{module}").register(commands)
    return set(commands.choices)


def test_every_command_word_is_mapped_to_the_module_that_registers_it() -> None:
    registered = {word: module for module in MODULES for word in words_of(module)}
    assert registered == COMMAND_MODULES


def test_a_known_word_builds_its_module_alone_and_anything_else_builds_all() -> None:
    def choices(*words: str) -> set[str]:
        action = next(a for a in build_parser(words)._actions
                      if isinstance(a, argparse._SubParsersAction))
        return set(action.choices)

    assert choices("image", "ls") == {"image"}
    assert choices("run", "debian") == words_of("instances")
    assert choices() == choices("--help") == choices("nosuch") == set(COMMAND_MODULES)


def test_an_unknown_word_is_a_usage_error_listing_every_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nosuch"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err
