"""Service sets: parsing, validation, resolving actions, the shipped container set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from homecloud.errors import NotFound, UserError
from homecloud.instances.servicesets import (
    SHIPPED_DIR,
    ActionRegistry,
    ServiceSetLoader,
    load_service_set,
    parse_service_set,
)


class Noted:
    def __init__(self, log: list[str], name: str, **params: Any) -> None:
        self.log, self.name, self.params = log, name, params

    def do(self, ctx: None) -> None:
        self.log.append(f"do {self.name} {self.params}")

    def undo(self, ctx: None) -> None:
        self.log.append(f"undo {self.name}")


def registry(log: list[str]) -> ActionRegistry[None]:
    reg: ActionRegistry[None] = ActionRegistry()
    for name in ("one", "two"):
        reg.register(name, lambda params, name=name: Noted(log, name, **params))
    return reg


def test_parse_and_run() -> None:
    data = {"steps": [{"id": "a", "action": "one"},
                      {"id": "b", "action": "two", "after": ["a"], "with": {"x": 1}}]}
    log: list[str] = []
    registry(log).build(parse_service_set(data, "k", "k.yaml")).run(None)
    assert log == ["do one {}", "do two {'x': 1}"]


@pytest.mark.parametrize(("data", "message"), [
    ([], "expected a mapping with a 'steps' list"),
    ({"steps": [], "color": 1}, "unknown keys color"),
    ({"steps": ["a"]}, "step 1: expected a mapping"),
    ({"steps": [{"id": "a"}]}, "'action' must be a non-empty string"),
    ({"steps": [{"action": "one"}]}, "'id' must be a non-empty string"),
    ({"steps": [{"id": "a", "action": "one", "afterr": []}]}, "unknown keys afterr"),
    ({"steps": [{"id": "a", "action": "one", "after": [1]}]}, "'after' must be a list"),
    ({"steps": [{"id": "a", "action": "one", "with": [1]}]}, "'with' must be a mapping"),
    ({"steps": [{"id": "a", "action": "one", "after": ["z"]}]}, "unknown step 'z'"),
    ({"steps": [{"id": "a", "action": "one", "after": ["b"]},
                {"id": "b", "action": "one", "after": ["a"]}]}, "cycle"),
])
def test_bad_service_sets(data: Any, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        parse_service_set(data, "k", "/etc/homecloud/service-sets/k.yaml")
    assert info.value.message.startswith("/etc/homecloud/service-sets/k.yaml")


def test_unknown_action_and_bad_parameters() -> None:
    reg = registry([])
    sset = parse_service_set({"steps": [{"id": "a", "action": "three"}]}, "k", "k.yaml")
    with pytest.raises(UserError, match="unknown action 'three' \\(known: one, two\\)"):
        reg.build(sset)
    strict: ActionRegistry[None] = ActionRegistry()
    strict.register("one", lambda params: Noted([], "one", **dict(params, name="x")))
    sset = parse_service_set({"steps": [{"id": "a", "action": "one", "with": {"log": 1}}]},
                             "k", "k.yaml")
    with pytest.raises(UserError, match="bad parameters for one"):
        strict.build(sset)


def test_load_prefers_earlier_directories(tmp_path: Path) -> None:
    mine = tmp_path / "etc"
    mine.mkdir()
    (mine / "container.yaml").write_text(yaml.safe_dump({"steps": [{"id": "x",
                                                                      "action": "one"}]}))
    sset = load_service_set("container", [mine, SHIPPED_DIR])
    assert [s.id for s in sset.steps] == ["x"]
    assert load_service_set("container", [tmp_path, SHIPPED_DIR]).source.startswith(
        str(SHIPPED_DIR))
    with pytest.raises(NotFound, match="no service set 'vm2'"):
        load_service_set("vm2", [tmp_path])
    (mine / "broken.yaml").write_text("steps: [")
    with pytest.raises(UserError, match="not valid YAML"):
        load_service_set("broken", [mine])


def test_shipped_container_set_runs_dataset_and_network_together() -> None:
    sset = load_service_set("container", [SHIPPED_DIR])
    after = {s.id: set(s.after) for s in sset.steps}
    assert [s.action for s in sset.steps] == [
        "record-instance", "fork-dataset", "lease-address", "make-netns", "publish-name",
        "apply-firewall", "write-identity", "start-unit", "mark-ready"]
    # The dataset and the address are made at once; the namespace, the DNS name and the rules
    # at once after the address; the unit only when all are in place.
    assert after["dataset"] == after["lease"] == {"record"}
    assert after["netns"] == after["dns"] == after["firewall"] == {"lease"}
    assert after["identity"] == {"dataset", "lease"}
    assert after["unit"] == {"identity", "netns", "dns", "firewall"}
    assert after["ready"] == {"unit"}


def test_the_loader_parses_a_set_again_only_when_its_files_change(tmp_path: Path) -> None:
    mine = tmp_path / "etc"
    mine.mkdir()
    loader = ServiceSetLoader([mine, SHIPPED_DIR])
    shipped = loader.load("container")
    assert shipped.source.startswith(str(SHIPPED_DIR))
    assert loader.load("container") is shipped  # not parsed again

    override = mine / "container.yaml"
    override.write_text(yaml.safe_dump({"steps": [{"id": "x", "action": "one"}]}))
    assert [s.id for s in loader.load("container").steps] == ["x"]
    # Rewritten in place at once (same size, maybe the same timestamp): the text tells.
    override.write_text(yaml.safe_dump({"steps": [{"id": "y", "action": "one"}]}))
    assert [s.id for s in loader.load("container").steps] == ["y"]
    override.write_text("steps: [")
    with pytest.raises(UserError, match="not valid YAML"):
        loader.load("container")
    override.unlink()
    assert loader.load("container").steps == shipped.steps
    with pytest.raises(NotFound, match="no service set 'vm2'"):
        loader.load("vm2")
    with pytest.raises(UserError):
        loader.load("../container")
