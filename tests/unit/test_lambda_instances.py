"""Lambdas as instances, pure parts and the state they keep: a kind made from no image (its
instance row without one, the migration that allows it), its spec in InstanceSpec.options, its
state read from its socket, and what `hc run --kind lambda` is told."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, cast

import pytest

from homecloud.errors import UserError
from homecloud.images.catalog import SCHEMA as IMAGES
from homecloud.instances.drivers.base import DriverHost
from homecloud.instances.drivers.lambda_ import LambdaDriver, lambda_spec
from homecloud.instances.records import SCHEMA as INSTANCES
from homecloud.instances.records import Instance, InstanceRecords
from homecloud.instances.spec import HostLimits, InstanceSpec
from homecloud.lambdas.spec import LambdaSpec
from homecloud.state.store import Store
from homecloud.systemd.transient import UnitSummary

HOST = HostLimits(cpus=2, memory=4 << 30)


def lambda_instance(name: str = "fn", phase: str = "ready") -> Instance:
    spec = replace(LambdaSpec.parse(name, route=f"/{name}"), source=f"/srv/{name}.sh",
                   entry=f"{name}.sh", deployed=1.0)
    return Instance(InstanceSpec(name=name, image="", kind="lambda", network="none",
                                 options=spec.options()), machine_id="", phase=phase)


def driver() -> LambdaDriver:
    return LambdaDriver(cast(DriverHost, None))  # these checks use nothing of the host


def test_rows_from_before_keep_their_image_and_a_lambda_row_has_none(tmp_path: Any) -> None:
    store = Store(tmp_path / "state.db", [IMAGES])
    store.execute("INSERT INTO images VALUES ('debian', 'images/debian', 'x', 0, 0)")
    # The instances table as the first two migrations made it, with a row.
    older = replace(INSTANCES, migrations=INSTANCES.migrations[:2])
    store.require(older)
    web = InstanceSpec(name="web", image="debian")
    store.execute("INSERT INTO instances (name, image, kind, spec, created, phase, machine_id) "
                  "VALUES ('web', 'debian', 'container', ?, 1.0, 'ready', 'abc')",
                  (json.dumps(web.to_json()),))
    reopened = Store(tmp_path / "state.db")
    records = InstanceRecords(reopened)
    assert reopened.version("instances") == len(INSTANCES.migrations)
    assert records.get("web") == Instance(web, machine_id="abc", phase="ready", created=1.0)
    records.insert(lambda_instance())
    assert reopened.query("SELECT image FROM instances WHERE name = 'fn'")[0][0] is None
    assert lambda_spec(records.all()[0]).route == "/fn"
    # The image a container names is still one that exists.
    with pytest.raises(Exception, match="no image named 'nosuch'"):
        records.insert(Instance(InstanceSpec(name="x", image="nosuch"), machine_id=""))


def test_a_lambda_is_deployed_again_in_place(tmp_path: Any) -> None:
    records = InstanceRecords(Store(tmp_path / "state.db"))
    records.insert(lambda_instance())
    again = replace(lambda_instance().spec, options={**lambda_instance().spec.options,
                                                     "timeout": 3.0})
    records.set_spec(again)
    found = records.get("fn")
    assert found is not None and lambda_spec(found).timeout == 3.0 and found.phase == "creating"


def test_a_kind_without_an_image_is_checked_by_its_driver() -> None:
    spec = lambda_instance().spec
    spec.validate(HOST, kinds=("lambda",), uses_image=False)
    with pytest.raises(UserError, match="image name"):
        spec.validate(HOST, kinds=("lambda",))
    driver().validate(spec)


@pytest.mark.parametrize("change, message", [
    ({"image": "debian"}, "`hc run` makes no lambdas: deploy one with `hc lambda deploy"),
    ({"options": {}}, "`hc run` makes no lambdas"),
    ({"command": ["sh"]}, "a lambda takes none of a command, -p"),
    ({"machine": "q35"}, "a lambda takes none of --machine"),
    ({"options": {"nonsense": 1}}, "lambda fn: its options are not a lambda's"),
])
def test_what_a_lambda_instance_refuses(change: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        driver().validate(replace(lambda_instance().spec, **change))


@pytest.mark.parametrize("phase, unit, state", [
    ("ready", UnitSummary("hc-fn.socket", "loaded", "active", "listening"), "ready"),
    ("ready", UnitSummary("hc-fn.socket", "loaded", "inactive", "dead"), "stopped"),
    ("ready", None, "stopped"),
    ("ready", UnitSummary("hc-fn.socket", "loaded", "failed", "failed"), "failed"),
    ("creating", None, "creating"),
])
def test_its_state_is_its_sockets(phase: str, unit: UnitSummary | None, state: str) -> None:
    instance = lambda_instance(phase=phase)
    assert driver().state_unit(instance) == "hc-fn.socket"
    assert driver().state(instance, unit) == state


def test_exec_and_console_are_refused_in_one_line() -> None:
    with pytest.raises(UserError, match="hc exec .* is not supported for lambda instances"):
        driver().exec_argv(lambda_instance(), ["sh"])
    with pytest.raises(UserError, match="hc console .* is not supported for lambda"):
        driver().console(lambda_instance())
