"""Machine workflows: parsing, validation and where they are found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homecloud.errors import NotFound, UserError
from homecloud.machines.workflow import (
    DEFAULT_TIMEOUT,
    default_workflow,
    load_workflow,
    parse_workflow,
    workflow_paths,
)

EXAMPLE: dict[str, Any] = {
    "description": "install",
    "actions": [
        {"id": "wipe", "action": "wipe-disk", "timeout": 60},
        {"id": "partition", "action": "partition", "timeout": 60, "with": {"esp": "256M"}},
        {"id": "image", "action": "stream-image", "timeout": 1800},
        {"id": "extra", "action": "write-file",
         "with": {"path": "/etc/motd", "content": "hi\n"}},
        {"id": "cmd", "action": "run-in-target", "with": {"argv": ["systemctl", "enable", "ssh"]}},
    ],
}


def test_parses_ordered_actions_with_defaults() -> None:
    flow = parse_workflow(EXAMPLE, "install", "x.yaml")
    assert flow.ids() == ["wipe", "partition", "image", "extra", "cmd"]
    assert flow.actions[3].timeout == DEFAULT_TIMEOUT
    assert flow.to_json()[1] == {"id": "partition", "action": "partition", "timeout": 60,
                                 "with": {"esp": "256M"}}
    assert flow.description == "install"


def _with(action: dict[str, Any]) -> dict[str, Any]:
    return {"actions": [action]}


@pytest.mark.parametrize(("data", "message"), [
    ([], "expected a mapping with an 'actions' list"),
    ({"actions": []}, "'actions' is empty"),
    ({"actions": [], "steps": []}, "unknown keys steps"),
    (_with({"id": "a", "action": "format-c"}), "unknown action 'format-c'"),
    (_with({"id": "A B", "action": "wipe-disk"}), "'id' must be lower-case"),
    (_with({"id": "a", "action": "wipe-disk", "timeout": 0}), "'timeout' must be"),
    (_with({"id": "a", "action": "wipe-disk", "timeout": "60"}), "'timeout' must be"),
    (_with({"id": "a", "action": "wipe-disk", "after": ["b"]}), "unknown keys after"),
    (_with({"id": "a", "action": "wipe-disk", "with": {"x": 1}}), "unknown parameters x"),
    (_with({"id": "a", "action": "write-file", "with": {"path": "/x"}}),
     "missing parameters content"),
    (_with({"id": "a", "action": "write-file", "with": {"path": "etc/x", "content": ""}}),
     "'path' must be an absolute path"),
    (_with({"id": "a", "action": "write-file", "with": {"path": "/a/../b", "content": ""}}),
     "must not contain '..'"),
    (_with({"id": "a", "action": "run-in-target", "with": {"argv": []}}),
     "'argv' must be a non-empty list of strings"),
    (_with({"id": "a", "action": "partition", "with": {"esp": "lots"}}), "'esp' is not a size"),
    (_with({"id": "a", "action": "wipe-disk", "with": [1]}), "'with' must be a mapping"),
    ({"actions": [{"id": "a", "action": "wipe-disk"}, {"id": "a", "action": "identity"}]},
     "action id 'a' is used twice"),
])
def test_bad_workflows_are_refused_with_the_file_named(data: Any, message: str) -> None:
    with pytest.raises(UserError, match="^bad.yaml: ") as info:
        parse_workflow(data, "w", "bad.yaml")
    assert message in info.value.message


def test_the_users_workflow_wins_over_the_shipped_one(tmp_path: Path) -> None:
    user, shipped = tmp_path / "etc", tmp_path / "shipped"
    user.mkdir()
    shipped.mkdir()
    (shipped / "machine-install.yaml").write_text(
        "actions:\n  - {id: wipe, action: wipe-disk}\n")
    paths = workflow_paths("install", user, shipped)
    assert load_workflow("install", paths).ids() == ["wipe"]
    (user / "install.yaml").write_text("actions:\n  - {id: mine, action: identity}\n")
    assert load_workflow("install", paths).ids() == ["mine"]


def test_missing_and_broken_workflow_files(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no workflow 'nope': looked for"):
        load_workflow("nope", [tmp_path / "nope.yaml"])
    (tmp_path / "bad.yaml").write_text("actions: [\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_workflow("bad", [tmp_path / "bad.yaml"])
    with pytest.raises(UserError, match="workflow name"):
        workflow_paths("../etc/passwd")


def test_default_workflow_names() -> None:
    assert default_workflow(False) == "install"
    assert default_workflow(True) == "diskless"
