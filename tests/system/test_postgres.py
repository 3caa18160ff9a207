"""A durable Postgres (issue 12): `hc image build postgres`, then `hc run postgres` gives a
PostgreSQL 15 container whose data directory (WAL included) is a dataset of its own,
volumes/NAME/data, reached by name from the host; it survives a SIGKILL mid-write and passes
pg_amcheck; `hc rm` removes its data; bad input changes nothing.

The image is built once in the session dev host (about 1.5 min); one Postgres instance is
shared by the tests in order, as a user would use it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from cli_checks import POOL, assert_nothing_left, ensure_busybox, hc_fails, wait_for
from postgres_checks import PASSWORD, PG_BIN, Postgres, postgres_image

from homecloud.devhost import DevHost

pytestmark = pytest.mark.system

ROWS = 1000


def dataset_exists(host: DevHost, path: str) -> bool:
    return host.run("test", "-e", f"{POOL}/{path}", check=False).returncode == 0


def snapshots_supported(host: DevHost) -> bool:
    return host.hc("snapshot", "--help", check=False).returncode == 0


@pytest.fixture(scope="module")
def db(devhost: DevHost) -> Iterator[Postgres]:
    name = "pgdb"
    image = postgres_image(devhost)
    started = time.monotonic()
    devhost.hc("run", image, "--name", name, "--env", f"POSTGRES_PASSWORD={PASSWORD}",
               timeout=300)
    print(f"hc run postgres returned, accepting connections, in "
          f"{time.monotonic() - started:.1f} s")
    db = Postgres.on(devhost, name)
    # The name resolves through homecloud's DNS on the bridge.
    gateway = devhost.hc("network", "ls", json=True)["gateway4"]
    answer = devhost.run("dig", "+short", f"@{gateway}", db.fqdn, "A").stdout
    assert answer.split() == [db.address]
    yield db
    devhost.hc("rm", "-f", name, check=False)


def test_data_lives_on_its_own_dataset(db: Postgres) -> None:
    host = db.host
    assert db.psql("CREATE TABLE notes (id int PRIMARY KEY, body text)").returncode == 0
    db.psql(f"INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, {ROWS}) i")
    assert db.psql("SELECT count(*) FROM notes").stdout.strip() == str(ROWS)
    # The cluster, WAL included, is in volumes/pgdb/data, a dataset (btrfs subvolume) of its
    # own; nothing of it is in the instance's own tree.
    data = f"{POOL}/volumes/{db.name}/data"
    assert host.run("btrfs", "subvolume", "show", data, check=False).returncode == 0
    assert host.run("cat", f"{data}/15/main/PG_VERSION").stdout.strip() == "15"
    assert host.run("test", "-d", f"{data}/15/main/pg_wal").returncode == 0
    assert host.run("ls", "-A", f"{POOL}/instances/{db.name}/var/lib/postgresql").stdout == ""
    # Owned by the guest's postgres user through the id-mapped mount: on disk, the guest's ids.
    inside = host.hc("exec", db.name, "--", "stat", "-c", "%U", "/var/lib/postgresql/15/main")
    assert inside.stdout.strip() == "postgres"


def test_password_is_required_from_the_bridge(db: Postgres) -> None:
    wrong = db.psql("SELECT 1", password="wrong", check=False)
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr
    # The password went through nspawn's --setenv once; it was not written into the tree.
    found = db.host.run("grep", "-rlF", PASSWORD, f"{POOL}/instances/{db.name}/etc",
                        f"{POOL}/volumes/{db.name}/data", check=False)
    assert found.stdout == ""


def test_recovers_from_sigkill_mid_write(db: Postgres) -> None:
    host = db.host
    # pgbench and pg_amcheck of the image (the host needs only psql); pgbench over TCP, as a
    # client on the bridge would write.
    pgbench = ["env", f"PGPASSWORD={PASSWORD}", f"{PG_BIN}/pgbench", "-h", db.address,
               "-U", "postgres"]
    host.hc("exec", db.name, "--", *pgbench, "-q", "-i", "-s", "2", "postgres")
    writer = subprocess.Popen(host.command([*host.hc_argv(), "exec", db.name, "--", *pgbench,
                                            "-T", "60", "-c", "4", "postgres"]),
                              env=host.environment(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        # Kill only once transactions are committing.
        wait_for("pgbench to commit", lambda: int(db.psql(
            "SELECT count(*) FROM pgbench_history").stdout.strip() or 0) > 100, timeout=30)
        time.sleep(2)
        if snapshots_supported(host):  # what a policy's snapshot would hold, mid-write
            host.hc("snapshot", "create", db.name, "--name", "midwrite")
            time.sleep(1)
        host.run("systemctl", "kill", "-s", "KILL", db.unit)
        writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode != 0, "pgbench went on after its server was killed"
    wait_for("the unit to stop", lambda: host.run(
        "systemctl", "is-active", db.unit, check=False).stdout.strip() != "active")
    host.hc("start", db.name, timeout=300)  # returns once Postgres accepts connections again
    log = host.hc("exec", db.name, "--", "cat", "/var/log/postgresql/postgresql-15-main.log")
    assert "automatic recovery in progress" in log.stdout, log.stdout[-2000:]
    assert db.psql("SELECT count(*) FROM notes").stdout.strip() == str(ROWS)
    assert int(db.psql("SELECT count(*) FROM pgbench_history").stdout) > 100
    check = host.hc("exec", db.name, "--", "runuser", "-u", "postgres", "--",
                    f"{PG_BIN}/pg_amcheck", "--install-missing", "--heapallindexed", "--all",
                    check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_clone_of_a_snapshot_taken_mid_write_recovers(db: Postgres) -> None:
    """The snapshot taken while pgbench wrote (above) holds what a crash would have left:
    a clone of it starts, recovers from its WAL and passes pg_amcheck."""
    host = db.host
    if not snapshots_supported(host):
        pytest.skip("this homecloud has no `hc snapshot`")
    host.hc("snapshot", "clone", f"{db.name}@midwrite", "--name", "pgclone", timeout=300)
    try:
        assert dataset_exists(host, "volumes/pgclone/data")
        clone = host.hc("exec", "pgclone", "--", "cat",
                        "/var/log/postgresql/postgresql-15-main.log").stdout
        assert "automatic recovery in progress" in clone, clone[-2000:]
        rows = host.hc("exec", "pgclone", "--", "runuser", "-u", "postgres", "--", "psql",
                       "-At", "-c", "SELECT count(*) FROM notes; "
                       "SELECT count(*) > 0 FROM pgbench_history").stdout.split()
        assert rows == [str(ROWS), "t"]
        check = host.hc("exec", "pgclone", "--", "runuser", "-u", "postgres", "--",
                        f"{PG_BIN}/pg_amcheck", "--install-missing", "--heapallindexed",
                        "--all", check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        host.hc("rm", "-f", "pgclone", check=False)
    assert not dataset_exists(host, "volumes/pgclone")


def test_a_data_path_clash_is_refused(db: Postgres) -> None:
    host = db.host
    error = hc_fails(host, "run", "postgres", "--name", "clash", "--bind",
                     "/etc:/var/lib/postgresql/15")
    assert error == ("--bind target /var/lib/postgresql/15 clashes with the data dataset "
                     "'data' mounted at /var/lib/postgresql: bind somewhere outside "
                     "/var/lib/postgresql")
    assert_nothing_left(host, "clash")
    assert not dataset_exists(host, "volumes/clash")


def test_an_image_without_postgres_is_refused(db: Postgres) -> None:
    """An image that names the postgres set in its metadata but has no PostgreSQL."""
    host = db.host
    if not any(i["name"] == "nopg" for i in host.hc("image", "ls", json=True)):
        tree = "/var/lib/homecloud-tests/nopg"
        host.run("rm", "-rf", tree)
        host.run("mkdir", "-p", "/var/lib/homecloud-tests")
        host.run("cp", "-a", f"{POOL}/images/{ensure_busybox(host)}", tree)
        host.run("mkdir", "-p", f"{tree}/usr/lib/homecloud")
        host.run("tee", f"{tree}/usr/lib/homecloud/image.json",
                 input='{"service_set": "postgres"}\n')
        host.hc("image", "import", "nopg", tree)
        host.run("rm", "-rf", tree)
    error = hc_fails(host, "run", "nopg", "--name", "nopg1")
    assert error == ("image 'nopg' has no PostgreSQL 15 (/usr/lib/postgresql/15/bin/postgres "
                     "is missing), which this instance's service set runs; build one with "
                     "`hc image build postgres`")
    assert_nothing_left(host, "nopg1")
    assert not dataset_exists(host, "volumes/nopg1")
    host.hc("image", "rm", "nopg")


def test_rm_removes_the_data_dataset(db: Postgres) -> None:
    host = db.host
    assert dataset_exists(host, f"volumes/{db.name}/data")
    host.hc("rm", "-f", db.name)
    assert_nothing_left(host, db.name)
    assert not dataset_exists(host, f"volumes/{db.name}")
