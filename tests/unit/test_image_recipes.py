"""Recipe registry, debian recipe checks and debootstrap progress parsing: no root."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.errors import UserError
from homecloud.images.progress import Progress
from homecloud.images.recipes import RECIPES, build_image, get_recipe
from homecloud.images.recipes.debian import (
    check_mirror,
    check_release,
    debootstrap_command,
    make_generic,
)
from homecloud.images.recipes.debootstrap_progress import DebootstrapProgress

# A real bookworm run (debootstrap 1.0.128, --variant=minbase --include=systemd,...), trimmed to
# three packages; lines as debootstrap prints them, trailing spaces included.
RECORDED = """\
I: Retrieving InRelease 
I: Checking Release signature
I: Valid Release signature (key id 4D64FEC119C2029067D6E791F8D2585B8783D481)
I: Retrieving Packages 
I: Validating Packages 
I: Resolving dependencies of required packages...
I: Resolving dependencies of base packages...
I: Checking component main on http://deb.debian.org/debian...
I: Retrieving adduser 3.134
I: Validating adduser 3.134
I: Retrieving apt 2.6.1
I: Validating apt 2.6.1
I: Retrieving libc6 2.36-9+deb12u10
I: Validating libc6 2.36-9+deb12u10
I: Chosen extractor for .deb packages: dpkg-deb
I: Extracting adduser...
I: Extracting libc6...
I: Installing core packages...
I: Unpacking required packages...
I: Unpacking adduser...
I: Unpacking libc6:amd64...
I: Configuring required packages...
I: Configuring libc6:amd64...
I: Configuring adduser...
I: Unpacking the base system...
I: Unpacking apt...
I: Configuring the base system...
I: Configuring apt...
I: Base system installed successfully.
"""  # noqa: W291


def _run(lines: str, expected: int = 3) -> tuple[DebootstrapProgress, list[Progress]]:
    tracker = DebootstrapProgress(expected_packages=expected)
    reports = [report for line in lines.splitlines() if (report := tracker.feed(line))]
    return tracker, reports


def test_recorded_run_gives_one_forward_moving_bar() -> None:
    tracker, reports = _run(RECORDED)
    assert len(reports) == len(RECORDED.splitlines())
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    assert all(r.total == 12 for r in reports)  # 3 packages x (download, extract, 2 x install)
    phases = [r.phase for r in reports]
    assert phases[:8] == ["prepare"] * 8  # index files and signatures are not packages
    assert phases[-1] == "done" and reports[-1].done == reports[-1].total
    assert all(r.done < (r.total or 0) for r in reports[:-1])
    by_message = {r.message: r for r in reports}
    assert by_message["Validating libc6 2.36-9+deb12u10"].done == 3
    assert by_message["Extracting adduser..."] == Progress("extract", 4, 12,
                                                           "Extracting adduser...")
    assert by_message["Installing core packages..."].done == 6  # extract counts as complete
    assert by_message["Configuring apt..."].done == 11
    assert tracker.errors == []


def test_package_count_is_estimated_until_the_downloads_end() -> None:
    tracker, reports = _run(RECORDED, expected=100)
    assert reports[0].total == 400
    assert next(r for r in reports if r.phase == "extract").total == 12
    tracker, reports = _run(RECORDED, expected=1)
    assert [r.total for r in reports if r.phase == "download"][-1] == 12  # grows past estimate


def test_errors_and_noise() -> None:
    tracker = DebootstrapProgress()
    assert tracker.feed("E: Couldn't download packages: libc6") is None
    assert tracker.feed("W: Failure trying to run: chroot /x dpkg") is None
    assert tracker.feed("some tool chatter") is None
    assert tracker.errors == ["Couldn't download packages: libc6"]


def test_registry() -> None:
    assert sorted(RECIPES) == ["busybox", "debian", "postgres"]
    assert get_recipe("debian").takes == {"release", "mirror"}
    with pytest.raises(UserError,
                       match=r"unknown recipe 'ubuntu'; known recipes: busybox, debian, postgres"):
        get_recipe("ubuntu")


@pytest.mark.parametrize("recipe, options, message", [
    ("nope", {}, "unknown recipe 'nope'"),
    ("busybox", {"release": "bookworm"}, "recipe busybox takes no --release"),
    ("busybox", {"mirror": "http://x/debian"}, "recipe busybox takes no --mirror"),
])
def test_bad_requests_fail_before_touching_the_pool(recipe: str, options: dict[str, str],
                                                    message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_image(None, recipe, recipe, **options)  # type: ignore[arg-type]


def test_bad_image_name() -> None:
    with pytest.raises(UserError, match="image name '../x' must not contain"):
        build_image(None, "../x", "busybox")  # type: ignore[arg-type]


def test_release_and_mirror_checks(tmp_path: Path) -> None:
    (tmp_path / "bookworm").touch()
    assert check_release("bookworm", tmp_path) == "bookworm"
    for bad in ("bookwurm", "../../../etc/passwd", "Bookworm"):
        with pytest.raises(UserError, match="does not know the release"):
            check_release(bad, tmp_path)
    assert check_mirror("http://deb.debian.org/debian/") == "http://deb.debian.org/debian"
    with pytest.raises(UserError, match="not an http"):
        check_mirror("ftp.debian.org")


def test_debootstrap_command() -> None:
    assert debootstrap_command(Path("/p/images/.partial-d"), "bookworm", "http://m/debian",
                               Path("/c")) == [
        "debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus,iproute2",
        "--cache-dir=/c", "bookworm", "/p/images/.partial-d", "http://m/debian"]


def test_make_generic_removes_host_and_machine_traces(tmp_path: Path) -> None:
    files = {"etc/hostname": "buildhost\n", "etc/resolv.conf": "nameserver 10.0.0.1\n",
             "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
             "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease": "x",
             "var/lib/apt/lists/lock": "", "var/cache/apt/pkgcache.bin": "x",
             "var/cache/apt/archives/libc6_2.36_amd64.deb": "x", "etc/os-release": "ID=debian\n"}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    (tmp_path / "var/lib/apt/lists/partial").mkdir()
    make_generic(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["etc/machine-id", "etc/os-release", "var/lib/apt/lists/lock"]
    assert (tmp_path / "etc/machine-id").read_text() == ""
    assert (tmp_path / "var/lib/apt/lists/partial").is_dir()
    assert (tmp_path / "var/cache/apt/archives").is_dir()
