"""The front door as the agent sees it: users, tokens and routes, and the nginx configuration
that follows from them. A route change is saved and applied together: if the new
configuration fails its check, the change is undone and the running door is untouched."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from homecloud.config import Config
from homecloud.errors import HomecloudError, NotFound, UserError
from homecloud.frontdoor import ADMIN_GROUP
from homecloud.frontdoor.accounts import validate_account_name, validate_password
from homecloud.frontdoor.door import certificate_fingerprint, config_path, reload, write_config
from homecloud.frontdoor.passwords import digest, hash_password, new_secret
from homecloud.frontdoor.records import FrontdoorRecords
from homecloud.frontdoor.routing import Route, parse_match, parse_target
from homecloud.state.store import Store
from homecloud.systemd.transient import Systemd

log = logging.getLogger(__name__)

# An instance's address by name (None: it has none): the network service's answer.
AddressOf = Callable[[str], "str | None"]


class FrontdoorService:
    def __init__(self, config: Config, store: Store, systemd: Systemd,
                 address_of: AddressOf, instance_exists: Callable[[str], bool]) -> None:
        self.config = config
        self.records = FrontdoorRecords(store)
        self.systemd = systemd
        self.address_of = address_of
        self.instance_exists = instance_exists

    # --- users -------------------------------------------------------------------------------

    def add_user(self, name: str, password: str, groups: list[str], admin: bool) -> None:
        validate_account_name(name)
        wanted = {validate_account_name(g, "group name") for g in groups}
        if admin:
            wanted.add(ADMIN_GROUP)
        validate_password(password)
        self.records.add_user(name, hash_password(password), wanted, time.time())

    def set_password(self, name: str, password: str) -> None:
        validate_account_name(name)
        validate_password(password)
        self.records.set_password(name, hash_password(password))

    def remove_user(self, name: str) -> None:
        self.records.remove_user(validate_account_name(name))

    def new_token(self, name: str) -> str:
        token = new_secret()
        self.records.add_token(digest(token), validate_account_name(name), time.time())
        return token

    def certificate_fingerprint(self) -> str:
        """The SHA-256 fingerprint of the door's certificate, for `hc --fingerprint`."""
        return certificate_fingerprint(self.config)

    def users(self) -> list[dict[str, Any]]:
        return [asdict(user) for user in self.records.users(time.time())]

    def bans(self) -> dict[str, float]:
        return self.records.bans(time.time())

    # --- routes ------------------------------------------------------------------------------

    def add_route(self, match: str, target: str, group: str | None, public: bool) -> Route:
        host, path = parse_match(match)
        instance, port = parse_target(target)
        if group is not None:
            validate_account_name(group, "group name")
            if public:
                raise UserError("a route is either --public or for a --group, not both")
        if not self.instance_exists(instance):
            raise NotFound(f"no instance {instance!r} (see `hc ls`)")
        route = Route(host, path, instance, port, group, public, self.address_of(instance))
        self.records.add_route(route)
        try:
            self.apply()
        except BaseException:
            self.records.remove_route(route.host, route.path, route.name)
            raise
        return route

    def add_lambda_route(self, match: str, lambda_name: str, group: str | None,
                         public: bool) -> Route:
        """A route to a lambda (through the lambda gateway), applied at once."""
        host, path = parse_match(match)
        if group is not None:
            validate_account_name(group, "group name")
        route = Route(host, path, "", 0, group, public, lambda_name=lambda_name)
        self.records.add_route(route)
        try:
            self.apply()
        except BaseException:
            self.records.remove_route(route.host, route.path, route.name)
            raise
        return route

    def remove_route(self, match: str) -> None:
        host, path = parse_match(match)
        removed = next((r for r in self.records.routes() if (r.host, r.path) == (host, path)),
                       None)
        self.records.remove_route(host, path, match)
        try:
            self.apply()
        except BaseException:
            if removed is not None:
                self.records.add_route(removed)
            raise

    def routes(self) -> list[dict[str, Any]]:
        return [{**asdict(r), "name": r.name, "target": r.target}
                for r in self.records.routes()]

    def follow_instance(self, name: str) -> None:
        """Routes name their instance, nginx is given its address: when the instance is made
        again (its address may differ) or removed (its routes answer 502), render again. A
        failure is logged: the instance itself is fine, and `hc route` shows the address."""
        routes = [r for r in self.records.routes() if r.instance == name]
        if routes and any(r.address != self.address_of(name) for r in routes):
            self._apply_or_log(f"routes to {name}")

    def reconcile(self) -> None:
        """At the agent's start: render again, as instances may have other addresses after a
        reboot and a newer homecloud may render differently. nginx is reloaded only if the
        text changed; a host whose door never had a route or a configuration is left alone."""
        if self.records.routes() or config_path(self.config).exists():
            self._apply_or_log("routes")

    def _apply_or_log(self, what: str) -> None:
        try:
            self.apply()
        except HomecloudError as exc:
            log.warning("%s not updated: %s", what, exc.message)

    def apply(self) -> None:
        """Render the routes (with their instances' current addresses), check, install,
        reload."""
        routes = [r if r.lambda_name else replace(r, address=self.address_of(r.instance))
                  for r in self.records.routes()]
        self.records.set_addresses(routes)
        generation = write_config(self.config, routes)
        if generation is not None:
            reload(self.systemd, self.config, generation)
