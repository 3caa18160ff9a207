"""The lambda driver: a program run in a fresh sandboxed process for every HTTP request.

A lambda is made from its code, not an image: each deployment a read-only dataset
(lambdas/NAME.VERSION), served by two units on disk named after it, hc-NAME.socket (listening
while it is ready; the front door proxies its route there) and hc-NAME.service (the sandbox,
started by the socket on a request and gone when idle: homecloud/lambdas/spawner.py). Its set
(service-sets/lambda.yaml) records it, stores its code, adds its route and installs its units; it
has no address. Stopped, its socket is closed and the front door answers 503; deploying it
again (``update``) swaps the code under the running socket, no request seeing half of it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from homecloud.errors import Conflict, NotFound, UserError
from homecloud.frontdoor.service import FrontdoorService
from homecloud.instances.context import Stdio, StepContext
from homecloud.instances.drivers.base import InstanceDriver
from homecloud.instances.records import Instance
from homecloud.instances.servicesets import ActionFactory, plain_action
from homecloud.instances.spec import InstanceSpec
from homecloud.lambdas.code import (
    dataset_name,
    entry_of,
    remove_code,
    serving_version,
    store_code,
)
from homecloud.lambdas.spec import LambdaSpec
from homecloud.lambdas.unitfiles import LambdaUnits, default_runtime
from homecloud.lambdas.units import log_identifier, service_unit, socket_unit
from homecloud.systemd.journal import JOURNALCTL
from homecloud.systemd.transient import UnitStatus, UnitSummary

KIND = "lambda"


def lambda_spec(instance: Instance | InstanceSpec) -> LambdaSpec:
    spec = instance.spec if isinstance(instance, Instance) else instance
    return LambdaSpec.from_options(spec.name, spec.options)


def instance_spec(spec: LambdaSpec) -> InstanceSpec:
    """The instance a deployment of ``spec`` is: its code's entry found, stamped now."""
    entry = entry_of(Path(spec.source))
    return InstanceSpec(name=spec.name, image="", kind=KIND, network="none",
                        options={**spec.options(), "entry": entry, "deployed": time.time()})


class LambdaDriver(InstanceDriver):
    kind = KIND
    description = "a program run in a fresh sandboxed process for every HTTP request"
    uses_dataset = False
    uses_image = False

    @property
    def frontdoor(self) -> FrontdoorService:
        if self.host.frontdoor is None:
            raise UserError("lambdas are served through the front door, and this agent runs "
                            "without one")
        return self.host.frontdoor

    @property
    def units(self) -> LambdaUnits:
        return LambdaUnits(self.host.systemd,
                           default_runtime(self.frontdoor.config.frontdoor.max_body))

    def validate(self, spec: InstanceSpec) -> None:
        if spec.image or not spec.options:
            raise UserError("`hc run` makes no lambdas: deploy one with `hc lambda deploy NAME "
                            "PATH` (see `hc lambda deploy --help`)")
        given = spec.vm_options()
        if (spec.command or spec.ports or spec.binds or spec.env or spec.cpus is not None
                or spec.memory is not None or spec.idle is not None or spec.restart != "no"):
            given.append("a command, -p, --bind, --env, --cpus, --memory, --idle or --restart")
        if given:
            raise UserError(f"a lambda takes none of {', '.join(given)}: deploy it with "
                            "`hc lambda deploy NAME PATH` and its options")
        lambda_spec(spec)

    def code(self, name: str) -> Path:
        """The serving version of ``name``'s code (the newest in the pool)."""
        version = serving_version(self.host.pool, name)
        if not version:
            raise NotFound(f"lambda {name} has no code in the pool; deploy it again with "
                           "`hc lambda deploy`")
        return self.host.pool.path(dataset_name(name, version))

    # -- its service set's steps -----------------------------------------------------------------
    def actions(self) -> Mapping[str, ActionFactory[StepContext]]:
        driver = self

        class StoreCode:
            """Its code as a new read-only dataset."""

            def do(self, ctx: StepContext) -> None:
                spec = lambda_spec(ctx.instance)
                pool = driver.host.pool
                store_code(pool, spec.name, serving_version(pool, spec.name) + 1,
                           Path(spec.source))

            def undo(self, ctx: StepContext) -> None:
                remove_code(driver.host.pool, ctx.instance_name)

        class AddRoute:
            def do(self, ctx: StepContext) -> None:
                spec = lambda_spec(ctx.instance)
                if spec.route is not None:
                    driver.frontdoor.add_lambda_route(spec.route, spec.name, spec.group,
                                                      spec.public)

            def undo(self, ctx: StepContext) -> None:
                driver.remove_route(lambda_spec(ctx.instance))

        class InstallUnits:
            """Its units written and its socket listening (again, on `hc start`)."""

            def do(self, ctx: StepContext) -> None:
                name = ctx.instance_name
                if ctx.instance.phase == "creating":
                    foreign = driver.units.foreign(name)
                    if foreign is not None:
                        raise Conflict(f"the unit {foreign} exists already and is not a "
                                       f"lambda's; pick another name than {name!r}")
                ctx.status = driver.start_unit(ctx.instance, driver.host.start_timeout)

            def undo(self, ctx: StepContext) -> None:
                if ctx.instance.phase == "creating":
                    driver.units.remove(ctx.instance_name)
                else:
                    driver.units.stop(ctx.instance_name)

        return {"lambda-code": plain_action(StoreCode), "lambda-route": plain_action(AddRoute),
                "lambda-units": plain_action(InstallUnits)}

    # -- its life --------------------------------------------------------------------------------
    def start_unit(self, instance: Instance, timeout: float,
                   stdio: Stdio | None = None) -> UnitStatus:
        """Its units (rendered again: a reboot or a new homecloud may have changed them) and
        its socket listening."""
        return self.units.install(lambda_spec(instance), self.code(instance.name))

    def forget_unit(self, instance: Instance) -> None:
        for unit in (socket_unit(instance.name), service_unit(instance.name)):
            self.host.systemd.reset_failed(unit)

    def busy(self, instance: Instance, unit: UnitStatus | None) -> bool:
        """Never: removing it stops it first, and its running requests finish."""
        return False

    def stop(self, instance: Instance, timeout: float | None = None) -> None:
        """Its socket closed: running requests finish, new ones are answered 503."""
        self.units.stop(instance.name, timeout)

    def update(self, instance: Instance, spec: InstanceSpec) -> None:
        """Deploy it again: the new code and units first, then the old sandbox stops
        gracefully (its requests finish on the old code; the next starts the new one)."""
        old, new = lambda_spec(instance), lambda_spec(spec)
        pool = self.host.pool
        old_code = self.code(old.name)
        version = serving_version(pool, new.name) + 1
        code = store_code(pool, new.name, version, Path(new.source))
        route_changed = (old.route, old.group, old.public) != (new.route, new.group, new.public)
        try:
            if route_changed:
                self.remove_route(old)
                try:
                    if new.route is not None:
                        self.frontdoor.add_lambda_route(new.route, new.name, new.group,
                                                        new.public)
                except BaseException:
                    if old.route is not None:
                        self.frontdoor.add_lambda_route(old.route, old.name, old.group,
                                                        old.public)
                    raise
            try:
                self.units.install(new, code)
            except BaseException:
                self.units.install(old, old_code)
                raise
        except BaseException:
            pool.destroy(dataset_name(new.name, version))
            raise
        systemd = self.host.systemd
        systemd.stop_unit(service_unit(new.name))
        systemd.reset_failed(service_unit(new.name))
        remove_code(pool, new.name, keep=(version,))

    def remove(self, instance: Instance) -> None:
        self.remove_route(lambda_spec(instance))
        self.units.remove(instance.name)
        remove_code(self.host.pool, instance.name)

    def remove_route(self, spec: LambdaSpec) -> None:
        """Its route, if it has one (gone already if removed by hand with `hc route rm`)."""
        if spec.route is not None:
            with contextlib.suppress(NotFound):
                self.frontdoor.remove_route(spec.route)

    # -- its state and its log -------------------------------------------------------------------
    def state_unit(self, instance: Instance) -> str:
        return socket_unit(instance.name)

    def state(self, instance: Instance, unit: UnitSummary | UnitStatus | None) -> str:
        """ready while its socket listens (requests start it), stopped otherwise."""
        if instance.phase != "ready":
            return instance.phase
        if unit is None or unit.active_state in ("inactive", ""):
            return "stopped"
        return {"active": "ready"}.get(unit.active_state, unit.active_state)

    def log_command(self, instance: Instance, *, running: bool, lines: int,
                    follow: bool) -> list[str]:
        """What its requests wrote to stderr (tagged with its unit's name in the journal)."""
        argv = [JOURNALCTL, "--no-pager", "-o", "short",
                f"SYSLOG_IDENTIFIER={log_identifier(instance.name)}", "-n", str(lines)]
        return argv + (["-f"] if follow else [])

    def exec_argv(self, instance: Instance, argv: Sequence[str]) -> list[str]:
        raise self.unsupported("hc exec (a lambda runs a fresh process per request: call it "
                               "through its route)")

    def console(self, instance: Instance) -> None:
        raise self.unsupported("hc console (a lambda has no console)")
