"""Instance drivers are found by kind; a service set's start steps; the tool runner's errors."""

from __future__ import annotations

from typing import Any, cast

import pytest

from homecloud.errors import HostError, UserError
from homecloud.instances.drivers import DriverRegistry
from homecloud.instances.drivers.base import DriverHost
from homecloud.instances.drivers.container import ContainerDriver
from homecloud.instances.kinds import BUILTIN_KINDS
from homecloud.instances.servicesets import parse_service_set
from homecloud.instances.spec import InstanceSpec
from homecloud.tools import run_tool


def registry(extra: dict[str, str] | None = None) -> DriverRegistry:
    return DriverRegistry(cast(DriverHost, None), (extra or {}).items())


def test_builtin_kinds_load_lazily_and_once() -> None:
    drivers = registry()
    assert drivers.kinds() == tuple(sorted(BUILTIN_KINDS))
    driver = drivers.get("container")
    assert isinstance(driver, ContainerDriver) and drivers.get("container") is driver


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"instance kind 'wasm' is not supported \(use: "
                                        r"container, extra, lambda, machine, vm\)"):
        registry({"extra": "x:Y"}).get("wasm")


@pytest.mark.parametrize("path,message", [
    ("no_such_module:Driver", "cannot load"),
    ("homecloud.instances.spec:NoSuchClass", "cannot load"),
    ("homecloud.instances.spec:InstanceSpec", "is not an instance driver"),
])
def test_a_configured_driver_that_is_not_one_is_a_host_error(path: str, message: str) -> None:
    with pytest.raises(HostError, match=message):
        registry({"mine": path}).get("mine")


def test_spec_validation_takes_the_hosts_kinds() -> None:
    spec = InstanceSpec("web", "debian", kind="mine")
    with pytest.raises(UserError, match="kind 'mine' is not supported"):
        spec.validate()
    assert spec.validate(kinds=("container", "mine")) is spec


def test_a_container_refuses_what_it_cannot_do_in_one_line() -> None:
    driver = ContainerDriver(cast(DriverHost, None))
    with pytest.raises(UserError, match="^hc console is not supported for container instances$"):
        driver.console(cast(Any, None))


def test_start_steps_are_a_service_set_of_their_own() -> None:
    sset = parse_service_set({"steps": [{"id": "a", "action": "x"}],
                              "start": [{"id": "b", "action": "y"}]}, "k", "k.yaml")
    start = sset.starting()
    assert [s.id for s in start.steps] == ["b"] and start.source == "k.yaml (start)"
    with pytest.raises(UserError, match="k.yaml: 'start' must be a list of steps"):
        parse_service_set({"steps": [], "start": {"id": "b"}}, "k", "k.yaml")
    with pytest.raises(UserError, match="k.yaml: start: step 1"):
        parse_service_set({"steps": [], "start": [{"id": "b"}]}, "k", "k.yaml")


def test_a_missing_tool_names_its_package() -> None:
    with pytest.raises(HostError, match="^no-such-tool is missing: install pkg"):
        run_tool(["no-such-tool"], package="pkg")
    result = run_tool(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.first_error_line()) == (3, "out\n", "err")
    assert run_tool(["sleep", "5"], timeout=0.1).returncode < 0
