"""A homecloud Postgres as the system tests use it: the image built once in the session dev
host (and copied to others), and psql to an instance by name from its host."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import pytest
from cli_checks import copy_image

from homecloud.devhost import DevHost

IMAGE = "postgres"
PASSWORD = "correct horse battery staple"
PG_BIN = "/usr/lib/postgresql/15/bin"  # in the image


@dataclass(frozen=True)
class Postgres:
    host: DevHost
    name: str
    fqdn: str
    address: str

    @classmethod
    def on(cls, host: DevHost, name: str) -> Postgres:
        """Instance ``name`` of ``host``, by the name and address homecloud gave it."""
        members = host.hc("network", "ls", json=True)["instances"]
        member = {i["name"]: i for i in members}[name]
        return cls(host, name, member["fqdn"], member["ipv4"])

    def psql(self, sql: str, *, password: str = PASSWORD, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        """psql on the host, to the instance's name (resolved by homecloud's DNS)."""
        return self.host.run(*self.psql_argv(password), "-c", sql, check=check)

    def psql_argv(self, password: str = PASSWORD) -> list[str]:
        return ["env", f"PGPASSWORD={password}", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                self.dsn()]

    def dsn(self) -> str:
        # hostaddr: the dev host's resolver does not know homecloud's zone (no resolved);
        # the name is checked against homecloud's DNS, and psql still sends it.
        return f"host={self.fqdn} hostaddr={self.address} port=5432 user=postgres dbname=postgres"

    @property
    def unit(self) -> str:
        return f"hc-{self.name}.service"


def postgres_image(devhost: DevHost, *others: DevHost) -> str:
    """The postgres image, built in the session dev host ``devhost`` unless it has one (about
    1.5 min) and copied to ``others``; skips when the machine cannot build it."""
    if shutil.which("debootstrap") is None:
        pytest.skip("building the postgres image needs debootstrap (apt-get install debootstrap)")
    if shutil.which("psql") is None:
        pytest.skip("psql is missing on the host (apt-get install postgresql-client)")
    if not any(i["name"] == IMAGE for i in devhost.hc("image", "ls", json=True)):
        result = devhost.hc("image", "build", IMAGE, check=False, timeout=1800)
        if result.returncode == 3:  # the host lacks something (a mirror): the message names it
            pytest.skip(f"cannot build the postgres image here: {result.stderr.strip()[-500:]}")
        assert result.returncode == 0, result.stderr
    for host in others:
        copy_image(devhost, host, IMAGE)
    return IMAGE
