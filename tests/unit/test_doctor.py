"""`hc doctor`'s pure parts: a check's outcome as one line, the agent as a check."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.cli.doctor import AGENT_FIX, GROUP_FIX, _agent_check
from homecloud.config import load_config
from homecloud.errors import HostError, PermissionDenied, UserError
from homecloud.hostchecks import (
    CHECK_NAMES,
    NEEDS_AGENT,
    Check,
    Failed,
    Skipped,
    _one_line,
    run_check,
)


def _fails() -> str:
    raise Failed("it is broken", "mend it")


def _skips() -> str:
    raise Skipped("needs root: run `sudo hc doctor`")


def _host_error() -> str:
    raise HostError("nft is missing")


def _os_error() -> str:
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(("check", "expected"), [
    (lambda: "fine", Check("c", "ok", "fine")),
    (_fails, Check("c", "fail", "it is broken", "mend it")),
    (_skips, Check("c", "skipped", "needs root: run `sudo hc doctor`")),
    (_host_error, Check("c", "fail", "nft is missing")),
    (_os_error, Check("c", "fail", "PermissionError: [Errno 13] Permission denied")),
])
def test_a_check_becomes_one_line(check: object, expected: Check) -> None:
    assert run_check("c", check) == expected  # type: ignore[arg-type]


def test_the_agent_not_running_is_a_failed_check_with_its_fix() -> None:
    check = _agent_check(HostError("the homecloud agent is not running (no socket at /s)"), "/s")
    assert check == {"name": "agent", "status": "fail", "fix": AGENT_FIX,
                     "detail": "the homecloud agent is not running (no socket at /s)"}
    assert "journalctl -u hcd" in AGENT_FIX and "systemctl status hcd.socket" in AGENT_FIX


def test_an_agent_that_hangs_or_refuses_the_user_says_so() -> None:
    hung = _agent_check(TimeoutError(), "/s")
    assert hung["detail"] == "the agent did not answer on /s within 60 s"
    assert _agent_check(PermissionDenied("permission denied on /s"), "/s")["fix"] == GROUP_FIX
    assert _agent_check(None, "/s") == {"name": "agent", "status": "ok",
                                        "detail": "hcd answers on /s", "fix": None}


def test_the_checks_needing_the_agent_are_among_all_checks() -> None:
    assert set(NEEDS_AGENT) < set(CHECK_NAMES)


def test_a_yaml_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("pool: [\n")
    with pytest.raises(UserError) as raised:
        load_config(path)
    assert "\n" in raised.value.message
    line = _one_line(raised.value.message)
    assert line.startswith(f"{path}: not valid YAML: while parsing") and "\n" not in line
