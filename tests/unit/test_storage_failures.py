"""How errors from the kernel and from tools reach the user."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from homecloud.errors import Conflict, HostError, NotFound, PoolFull, UserError
from homecloud.storage.failures import os_failure, pool_full, tool_failure


def test_no_space_is_a_full_pool(tmp_path: Path) -> None:
    error = os_failure(OSError(errno.ENOSPC, "No space left on device"), tmp_path, "fork 'a'")
    assert isinstance(error, PoolFull)
    assert error.message.startswith(f"the pool at {tmp_path} is full (")
    assert "free): could not fork 'a'; remove unused images" in error.message


def test_quota_is_a_full_pool(tmp_path: Path) -> None:
    assert isinstance(os_failure(OSError(errno.EDQUOT, "quota"), tmp_path, "x"), PoolFull)


def test_missing_and_existing_use_the_callers_words(tmp_path: Path) -> None:
    missing = os_failure(OSError(errno.ENOENT, "No such file"), tmp_path, "x", missing="gone")
    assert isinstance(missing, NotFound) and missing.message == "gone"
    exists = os_failure(OSError(errno.EEXIST, "File exists"), tmp_path, "x", exists="there")
    assert isinstance(exists, Conflict) and exists.message == "there"


def test_without_words_they_are_host_errors(tmp_path: Path) -> None:
    error = os_failure(OSError(errno.ENOENT, "No such file or directory"), tmp_path, "do x")
    assert isinstance(error, HostError)
    assert error.message == "could not do x: No such file or directory"


def test_busy_is_a_conflict(tmp_path: Path) -> None:
    error = os_failure(OSError(errno.EBUSY, "busy"), tmp_path, "destroy 'a'")
    assert isinstance(error, Conflict) and "in use" in error.message


def test_permission_says_root(tmp_path: Path) -> None:
    error = os_failure(OSError(errno.EPERM, "Operation not permitted"), tmp_path, "x")
    assert isinstance(error, HostError) and "needs root" in error.message


def test_pool_full_on_a_missing_pool_still_reads_well(tmp_path: Path) -> None:
    assert "(0B free)" in pool_full(tmp_path / "nope", "x").message


@pytest.mark.parametrize("stderr,cls,detail", [
    ("cp: error writing 'x': No space left on device\n", PoolFull, None),
    ("tar: This does not look like a tar archive\ntar: Exiting with failure status\n",
     UserError, "tar: Exiting with failure status"),
    ("", UserError, "it failed without saying why"),
])
def test_tool_failures(tmp_path: Path, stderr: str, cls: type, detail: str | None) -> None:
    error = tool_failure(stderr, tmp_path, "receive a@b", UserError)
    assert type(error) is cls
    if detail:
        assert error.message == f"could not receive a@b: {detail}"
