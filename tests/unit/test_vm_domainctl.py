"""`hc exec` on q35 VMs: what reaches the user from libvirt's guest agent errors, and the
command line's shape (pure: no libvirtd)."""

from __future__ import annotations

import pytest

from homecloud.instances.drivers.domainctl import main
from homecloud.instances.drivers.libvirt_conn import agent_error


def test_the_guest_agents_own_words_are_kept() -> None:
    message = ("internal error: unable to execute QEMU agent command 'guest-exec': Guest agent "
               "command failed, error was 'Failed to execute child process \u201cx\u201d (No "
               "such file or directory)'")
    assert agent_error(message) == ("Failed to execute child process \u201cx\u201d (No such "
                                    "file or directory)")


def test_other_libvirt_errors_pass_whole() -> None:
    assert agent_error("timeout waiting for guest agent") == "timeout waiting for guest agent"


@pytest.mark.parametrize("argv", [[], ["exec", "vm1"], ["exec", "vm1", "--"],
                                  ["exec", "vm1", "ls"], ["run", "vm1", "--", "ls"]])
def test_a_malformed_command_line_is_a_usage_error(argv: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err == "usage: domainctl exec NAME -- CMD ...\n"
