"""`hc WORD [ACTION]` imports the module that owns WORD (the table says which) and builds only the
parsers those words reach; parsing gives what it gives with every parser built."""

from __future__ import annotations

import argparse
import importlib

import pytest

from homecloud.cli.main import COMMAND_MODULES, GLOBAL_OPTIONS, MODULES, build_parser, main


def words_of(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    importlib.import_module(f"homecloud.cli.{module}").register(commands)
    return set(commands.choices)


def test_every_command_word_is_mapped_to_the_module_that_registers_it() -> None:
    registered = {word: module for module in MODULES for word in words_of(module)}
    assert registered == COMMAND_MODULES


def sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
                  None)
    return {} if action is None else dict(action.choices)


def test_a_known_word_builds_its_parser_alone_and_anything_else_lists_all() -> None:
    def choices(*words: str) -> set[str]:
        return set(sub_commands(build_parser(words)))

    assert choices("image", "ls") == {"image"}
    assert choices("run", "debian") == {"run"}
    assert choices("--host", "snapshot", "policy", "ls") == {"policy"}  # an option's value
    assert choices("--help") == choices("--he") == choices("nosuch") == set(COMMAND_MODULES)
    assert choices() == choices("--version") == choices("--host", "h") == set()  # no listing
    assert choices("-h", "snapshot") == set(COMMAND_MODULES)  # hc's own help, listing all


def test_only_the_action_named_is_built_below_its_command() -> None:
    snapshot = sub_commands(build_parser(["snapshot", "create", "web", "--name", "x"]))
    assert set(sub_commands(snapshot["snapshot"])) == {"create"}
    # Listing the commands builds each one's parser, for its help line, and nothing under it.
    listed = sub_commands(build_parser(["--help"]))
    assert sub_commands(listed["snapshot"]) == {}


def full_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    for option in GLOBAL_OPTIONS:  # hc's own, before the command
        parser.add_argument(option)
    commands = parser.add_subparsers(dest="area")
    for module in MODULES:
        importlib.import_module(f"homecloud.cli.{module}").register(commands)
    return parser


@pytest.mark.parametrize("words", [
    ["snapshot", "create", "web", "--name", "b1", "--json"],
    ["snapshot", "ls", "--replicas"],
    ["policy", "set", "web", "--keep", "daily=7", "--every", "1d"],
    ["peer", "add", "b", "--url", "unix:/run/x.sock"],
    ["run", "debian", "--name", "web", "-p", "8080:80"],
    ["image", "ls", "--json"],
    ["rm", "-f", "a", "b"],
    ["doctor"],
])
def test_a_command_parses_as_with_every_parser_built(words: list[str]) -> None:
    lazy = build_parser(words).parse_args(words)
    assert vars(lazy) == vars(full_parser().parse_args(words))


def test_an_unknown_action_is_a_usage_error_listing_every_action(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["snapshot", "crate", "web"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'crate' (choose from 'create', 'ls'," in err


def test_help_lists_every_command_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for word in COMMAND_MODULES:
        assert f" {word} " in out
    assert "snapshot snapshots of instances: create, list, roll back, clone, remove" in out


@pytest.mark.parametrize("columns", [60, 200])
def test_help_is_as_wide_as_columns_says(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit):
        main(["snapshot", "--help"])
    widest = max(len(line) for line in capsys.readouterr().out.splitlines())
    assert columns - 30 < widest <= columns - 2


def test_an_unknown_word_is_a_usage_error_listing_every_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nosuch"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err
