"""systemd unit names for mount points, checked against systemd-escape itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from homecloud.storage.mountunit import escape_path, mount_unit_name, render_mount_unit

# Recorded from `systemd-escape --path` (systemd 252).
CASES = {
    "/var/lib/homecloud/pool": "var-lib-homecloud-pool",
    "/": "-",
    "//": "-",
    "/var/lib/hc-embedded-test/pool": "var-lib-hc\\x2dembedded\\x2dtest-pool",
    "/a b/c-d": "a\\x20b-c\\x2dd",
    "/.hidden/x": "\\x2ehidden-x",
    "/tmp//x/./y/": "tmp-x-y",
    "/ünï/ç": "\\xc3\\xbcn\\xc3\\xaf-\\xc3\\xa7",
    "/a\\b": "a\\x5cb",
    "/x:y_z.w": "x:y_z.w",
    "/a/.b": "a-.b",
    "/-x": "\\x2dx",
    "foo/bar": "foo-bar",
    "/100%": "100\\x25",
}


@pytest.mark.parametrize("path,expected", CASES.items())
def test_escape_path(path: str, expected: str) -> None:
    assert escape_path(path) == expected


@pytest.mark.skipif(shutil.which("systemd-escape") is None, reason="needs systemd-escape")
def test_escape_path_agrees_with_systemd_escape() -> None:
    paths = [*CASES, "/srv/pool", "/mnt/My Pool/x", "/a/b.c/d_e", "/é/ß/€", "/tab\there",
             "/x/-/y", "/.a/.b/.c", "/a.", "/~user/#1", "/a+b=c,d", "/ÿ"]
    result = subprocess.run(["systemd-escape", "--path", "--", *paths], capture_output=True,
                            text=True, check=True)
    assert [escape_path(path) for path in paths] == result.stdout.split()


def test_dotdot_cannot_be_escaped() -> None:
    with pytest.raises(ValueError, match="not a normalized path"):
        escape_path("/a/../b")


def test_mount_unit_name() -> None:
    assert mount_unit_name(Path("/var/lib/homecloud/pool")) == "var-lib-homecloud-pool.mount"


def test_render_mount_unit_escapes_specifiers() -> None:
    text = render_mount_unit(what="/data/100%.img", where="/srv/pool", fstype="btrfs",
                             options="loop", description="a pool", before=("hcd.service",))
    assert "What=/data/100%%.img\n" in text
    assert "Before=hcd.service\n" in text
