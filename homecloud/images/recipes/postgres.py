"""The `postgres` recipe: the debian recipe's tree with Debian's PostgreSQL 15, whose
containers are made by service-sets/postgres.yaml (their data directory on a dataset of its
own, mounted at /var/lib/postgresql).

The cluster is not made in the image: every instance makes its own on first boot, into its
data dataset, so no two instances share a data directory's system identifier, TLS key or
password. The package's own cluster (made while debootstrap configured it) and the build's
snakeoil certificate are removed; a unit (homecloud-postgres-init.service) runs the first-boot
script below before postgresql.service, only while the instance has no cluster configured:

- a new snakeoil certificate (Debian's ssl-cert), then ``pg_createcluster 15 main`` with the
  C.UTF-8 locale, listening on every address of the instance (its own address on the bridge);
- access from the instance's own subnets (pg_hba ``samenet``: the host bridge's IPv4 /24 and
  IPv6 /64, hence the host and the other instances): with a password when the instance was
  created with ``--env POSTGRES_PASSWORD=...`` (the ``postgres`` role gets it, SCRAM), else
  trusted. nspawn hands ``--env`` to the container's PID 1 only, so the script reads the
  password from /proc/1/environ; it is used once and written nowhere in the tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from homecloud.images.imagemeta import ImageMeta, write_image_meta
from homecloud.images.progress import Progress, ProgressCallback
from homecloud.images.recipes import debian
from homecloud.images.recipes.base import BuildOptions, BuildTarget, Recipe

VERSION = "15"
# perl: postgresql-common needs perl:any, a virtual package debootstrap cannot resolve.
PACKAGES = (*debian.PACKAGES, f"postgresql-{VERSION}", "perl")
EXPECTED_PACKAGES = 153  # bookworm, PACKAGES (measured); only the bar's first estimate
SERVICE_SET = "postgres"
DATA_DIR = f"/var/lib/postgresql/{VERSION}/main"
INIT_UNIT = "homecloud-postgres-init.service"
INIT_SCRIPT = "usr/lib/homecloud/postgres-init"
# What debootstrap's configuration of the packages made for the build machine alone.
BUILD_CLUSTER = (f"etc/postgresql/{VERSION}/main", f"var/lib/postgresql/{VERSION}")
BUILD_KEYS = ("etc/ssl/private/ssl-cert-snakeoil.key", "etc/ssl/certs/ssl-cert-snakeoil.pem")

INIT = f"""#!/bin/sh
# First boot of a homecloud Postgres: the cluster, made in the data dataset.
set -eu
conf=/etc/postgresql/{VERSION}/main
chown postgres:postgres /var/lib/postgresql
chmod 0755 /var/lib/postgresql
make-ssl-cert generate-default-snakeoil --force-overwrite
password=$(tr '\\0' '\\n' </proc/1/environ | sed -n 's/^POSTGRES_PASSWORD=//p' | head -n 1)
pwfile=""
if [ -n "$password" ]; then
    pwfile=$(mktemp)
    printf '%s\\n' "$password" >"$pwfile"
    chown postgres "$pwfile"
    method=scram-sha-256
else
    method=trust
fi
pg_createcluster --locale=C.UTF-8 --start-conf=auto -p 5432 -o "listen_addresses=*" \\
    {VERSION} main -- ${{pwfile:+--pwfile=$pwfile}}
[ -z "$pwfile" ] || rm -f "$pwfile"
printf '%s\\n' "# homecloud: the instance's subnets (its bridge: the host, other instances)" \\
    "host all all samenet $method" >>"$conf/pg_hba.conf"
# The generator that starts clusters ran before this one existed.
systemctl --no-block start postgresql@{VERSION}-main.service
"""

UNIT = f"""[Unit]
Description=Create this instance's PostgreSQL cluster (first boot)
ConditionPathExists=!/etc/postgresql/{VERSION}/main/postgresql.conf
RequiresMountsFor=/var/lib/postgresql
Before=postgresql.service

[Service]
Type=oneshot
ExecStart=/{INIT_SCRIPT}

[Install]
WantedBy=multi-user.target
"""


def configure(root: Path) -> None:
    """Remove the build's cluster and keys; install and enable the first-boot unit."""
    for path in BUILD_CLUSTER:
        shutil.rmtree(root / path, ignore_errors=True)
    for path in BUILD_KEYS:
        (root / path).unlink(missing_ok=True)
    script = root / INIT_SCRIPT
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(INIT)
    script.chmod(0o755)
    units = root / "etc/systemd/system"
    (units / INIT_UNIT).write_text(UNIT)
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / INIT_UNIT).unlink(missing_ok=True)
    (wants / INIT_UNIT).symlink_to(f"/etc/systemd/system/{INIT_UNIT}")
    write_image_meta(root, ImageMeta(service_set=SERVICE_SET))


def fill(target: BuildTarget, options: BuildOptions, progress: ProgressCallback) -> None:
    debian.install_tree(target.root, options, progress, packages=PACKAGES,
                        expected_packages=EXPECTED_PACKAGES)
    progress(Progress("configure", 1, 1, "first-boot cluster unit"))
    configure(target.root)


RECIPE = Recipe(name="postgres",
                description=f"Debian with PostgreSQL {VERSION}; its instances keep their "
                            "data on a dataset of their own",
                # PostgreSQL 15 is bookworm's: the release is not the user's to choose.
                prepare=debian.prepare, fill=fill, takes=frozenset({"mirror"}))
