"""The postgres recipe's finishing of a tree, image metadata naming a service set, and the
image check of the postgres set."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from homecloud.errors import UserError
from homecloud.images.imagemeta import META_PATH, ImageMeta, read_image_meta, write_image_meta
from homecloud.images.recipes import get_recipe
from homecloud.images.recipes.postgres import INIT_SCRIPT, INIT_UNIT, configure
from homecloud.instances.context import StepContext
from homecloud.instances.readiness import readiness_actions
from homecloud.instances.records import Instance
from homecloud.instances.spec import InstanceSpec
from homecloud.storage.copy import CopyDriver


def test_configure_removes_the_build_cluster_and_enables_first_boot(tmp_path: Path) -> None:
    root = tmp_path
    for path in ("etc/postgresql/15/main/conf.d", "var/lib/postgresql/15/main/base",
                 "etc/ssl/private", "etc/ssl/certs", "etc/systemd/system"):
        (root / path).mkdir(parents=True)
    (root / "etc/ssl/private/ssl-cert-snakeoil.key").write_text("build key")
    (root / "etc/ssl/certs/ssl-cert-snakeoil.pem").write_text("build cert")
    configure(root)
    assert not (root / "etc/postgresql/15/main").exists()
    assert not (root / "var/lib/postgresql/15").exists()
    assert (root / "var/lib/postgresql").is_dir()  # postgres's home: the mount point
    assert not (root / "etc/ssl/private/ssl-cert-snakeoil.key").exists()
    unit = (root / "etc/systemd/system" / INIT_UNIT).read_text()
    assert "ConditionPathExists=!/etc/postgresql/15/main/postgresql.conf" in unit
    assert "Before=postgresql.service" in unit
    link = root / "etc/systemd/system/multi-user.target.wants" / INIT_UNIT
    assert str(link.readlink()) == f"/etc/systemd/system/{INIT_UNIT}"
    script = (root / INIT_SCRIPT).read_text()
    assert (root / INIT_SCRIPT).stat().st_mode & 0o111
    assert "samenet" in script and "/proc/1/environ" in script
    assert read_image_meta(root) == ImageMeta(service_set="postgres")
    configure(root)  # again: idempotent


def test_recipe_takes_no_release() -> None:
    assert get_recipe("postgres").takes == {"mirror"}


def test_image_metadata(tmp_path: Path) -> None:
    assert read_image_meta(tmp_path) == ImageMeta()
    write_image_meta(tmp_path, ImageMeta(service_set="postgres"))
    assert read_image_meta(tmp_path).service_set == "postgres"
    meta = tmp_path / META_PATH
    for text, message in [("[1]", "must be a JSON object"), ("{", "not valid JSON"),
                          ('{"service_set": 5}', "service_set must be a string"),
                          ('{"service_set": "../vm"}', "service set '../vm' must not contain")]:
        meta.write_text(text)
        with pytest.raises(UserError, match=message):
            read_image_meta(tmp_path)


def test_image_metadata_never_follows_links_out_of_the_tree(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text('{"service_set": "postgres"}')
    root = tmp_path / "image"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/homecloud").symlink_to(tmp_path)
    with pytest.raises(UserError, match="must be a plain file, not a symlink"):
        read_image_meta(root)


class _Driver:
    """What the image check uses of a driver: its host's pool."""

    def __init__(self, pool_root: Path) -> None:
        self.host = SimpleNamespace(pool=CopyDriver(pool_root))


def test_require_image(tmp_path: Path) -> None:
    (tmp_path / "images/pg/usr/bin").mkdir(parents=True)
    (tmp_path / "images/pg/usr/bin/pg_createcluster").touch()
    factory = readiness_actions(_Driver(tmp_path))["require-image"]  # type: ignore[arg-type]
    step = factory({"paths": ["/usr/bin/pg_createcluster"], "what": "PostgreSQL",
                    "hint": "build one with `hc image build postgres`"})
    ctx = StepContext(instance=Instance(InstanceSpec("db", "pg"), machine_id="ab" * 16))
    step.do(ctx)
    ctx.instance = Instance(InstanceSpec("db", "plain"), machine_id="ab" * 16)
    with pytest.raises(UserError, match=r"image 'plain' has no PostgreSQL "
                       r"\(/usr/bin/pg_createcluster is missing\), which this instance's "
                       r"service set runs; build one with `hc image build postgres`"):
        step.do(ctx)
    with pytest.raises(ValueError, match="inside the image"):
        factory({"paths": ["../etc/shadow"], "what": "x"})
    wait = readiness_actions(_Driver(tmp_path))["wait-command"]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty list"):
        wait({"argv": "pg_isready"})
