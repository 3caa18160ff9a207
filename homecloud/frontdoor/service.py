"""The front door as the agent sees it: users, tokens and routes, and the nginx configuration
that follows from them. A route change is saved and applied together: if the new
configuration fails its check, the change is undone and the running door is untouched."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from homecloud.config import Config
from homecloud.errors import NotFound, UserError
from homecloud.frontdoor import ADMIN_GROUP
from homecloud.frontdoor.accounts import validate_account_name, validate_password
from homecloud.frontdoor.door import reload, write_config
from homecloud.frontdoor.passwords import digest, hash_password, new_secret
from homecloud.frontdoor.records import FrontdoorRecords
from homecloud.frontdoor.routing import Route, parse_match, parse_target
from homecloud.state.store import Store
from homecloud.systemd.transient import Systemd

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
        return [{**asdict(r), "name": r.name} for r in self.records.routes()]

    def apply(self) -> None:
        """Render the routes (with their instances' current addresses), check, install,
        reload."""
        routes = [replace(r, address=self.address_of(r.instance))
                  for r in self.records.routes()]
        self.records.set_addresses(routes)
        generation = write_config(self.config, routes)
        if generation is not None:
            reload(self.systemd, self.config, generation)
