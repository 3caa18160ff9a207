"""Install homecloud on a host whose PID 1 is systemd (natively, or inside a dev host).

    python -m homecloud.host.setup [--pool-size 8G]

Run as root with the venv's python: the units point at the directory of that python, so the
agent runs from the same venv. Idempotent: running it again changes only what differs.
`hc-devhost up` runs it inside each dev host; `python3 -m homecloud.host.bootstrap up` runs it here
when PID 1 is systemd.
"""

from __future__ import annotations

import argparse
import errno
import grp
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from homecloud.config import CONFIG_PATH, Config
from homecloud.errors import HostError, exit_status
from homecloud.files import write_if_changed
from homecloud.host.bootstrap import BootstrapError, link_command, systemd_booted
from homecloud.host.inotify_limits import (
    LIMITS,
    PROC_SYS,
    SYSCTL_DROPIN,
    Limit,
    dropin_text,
    raise_limits,
    read_limits,
)
from homecloud.ownunits import (
    AGENT_UNIT,
    AUTH_SOCKET_UNIT,
    CONSOLE_SOCKET_UNIT,
    DNS_UNIT,
    DOOR_UNIT,
    UNITS,
    WAKE_SOCKET_UNIT,
)
from homecloud.resources import shipped_dir
from homecloud.sizes import format_size, parse_size
from homecloud.tools import ToolResult, run_tool

UNIT_DIR = Path("/etc/systemd/system")
PATH_DIR = Path("/usr/local/bin")
PROFILE_SNIPPET = Path("/etc/profile.d/homecloud.sh")
COMMANDS = ("hc", "hcd")
GROUP = Config().group


@dataclass(frozen=True)
class Layout:
    """Where hostsetup reads and writes; tests point it at a scratch tree."""

    units_src: Path
    bindir: Path
    unit_dir: Path = UNIT_DIR
    config_path: Path = CONFIG_PATH
    path_dir: Path = PATH_DIR
    profile_snippet: Path = PROFILE_SNIPPET
    sysctl_dropin: Path = SYSCTL_DROPIN
    proc_sys: Path = PROC_SYS


def render_unit(text: str, bindir: Path) -> str:
    return text.replace("@BINDIR@", str(bindir))


def install_units(layout: Layout) -> list[str]:
    """Install the agent's (and its DNS server's) units with their paths filled in; return the
    names that changed."""
    changed = []
    for unit in UNITS:
        source = layout.units_src / unit
        try:
            text = source.read_text()
        except FileNotFoundError:
            raise HostError(f"{source} is missing: homecloud is installed incompletely; "
                            "install it again") from None
        if write_if_changed(layout.unit_dir / unit, render_unit(text, layout.bindir)):
            changed.append(unit)
    return changed


def config_text(pool_size: str | None) -> str:
    """The first config file; ``pool_size`` is a size as the admin typed it (already valid)."""
    if pool_size:
        size_line = f"  size: {pool_size}"
    else:
        size_line = f"  # size: {format_size(Config().pool.size)}"
    return (
        "# homecloud host configuration, read by hcd at start. Written once by hostsetup and\n"
        "# never overwritten: edit freely. Every setting and its default: homecloud/config.py.\n"
        "pool:\n"
        "  # auto: btrfs, then reflink, then copy; an embedded btrfs file when nothing fits.\n"
        "  driver: auto\n"
        f"{size_line}\n"
    )


def write_config(path: Path, pool_size: str | None) -> bool:
    """Write the config file only if there is none: it belongs to the admin after that."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(pool_size))
    return True


def profile_text(bindir: Path) -> str:
    return (
        "# homecloud: put the hc command on PATH (written by homecloud hostsetup)\n"
        f'case ":$PATH:" in *":{bindir}:"*) ;; *) PATH="$PATH:{bindir}"; export PATH ;; esac\n'
    )


def put_on_path(layout: Layout) -> str:
    """Make `hc` reachable: symlinks in /usr/local/bin where it is writable; else (a dev host,
    whose /usr is the machine's, read-only) a profile.d snippet adding the venv to PATH."""
    links = [link_command(layout.path_dir, layout.bindir / command) for command in COMMANDS]
    if all(links):
        return f"{', '.join(COMMANDS)} linked into {layout.path_dir}"
    write_if_changed(layout.profile_snippet, profile_text(layout.bindir))
    return f"{layout.bindir} added to PATH by {layout.profile_snippet}"


def raise_inotify_limits(layout: Layout, limits: Sequence[Limit] = LIMITS) -> list[str]:
    """Containers' inotify limits (homecloud/host/inotify_limits.py): kept at boot by a sysctl.d
    drop-in, and raised at once where /proc/sys is writable. In a container (a dev host) it is
    read-only and the machine's limits apply; the drop-in is kept all the same."""
    done = []
    readings = read_limits(layout.proc_sys, limits)
    if write_if_changed(layout.sysctl_dropin, dropin_text(readings)):
        settings = ", ".join(f"{r.limit.key}={r.wanted}" for r in readings)
        done.append(f"installed {layout.sysctl_dropin} ({settings})")
    try:
        raised = raise_limits(layout.proc_sys, limits)
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise HostError(f"cannot raise the inotify limits in {layout.proc_sys}: "
                            f"{exc.strerror}") from None
        low = ", ".join(f"{r.limit.key} is {r.value}" for r in readings if r.low)
        return [*done, f"{low} here: {layout.proc_sys} is read-only (a container), so the "
                       "machine's own limits apply"]
    if raised:
        done.append(f"raised {', '.join(raised)}")
    return done


def ensure_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return False
    except KeyError:
        pass
    result = run_tool(["groupadd", "--system", name], package="passwd")
    if not result.ok:
        raise HostError(f"groupadd {name} failed: {result.first_error_line()}")
    return True


def _systemctl(*args: str, check: bool = True) -> ToolResult:
    result = run_tool(["systemctl", *args], package="systemd")
    if check and not result.ok:
        raise HostError(f"systemctl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def setup(layout: Layout, pool_size: str | None = None, group: str = GROUP) -> list[str]:
    """Install and start the agent's socket; return what was done, one line each."""
    done = []
    if ensure_group(group):
        done.append(f"created group {group}")
    changed = install_units(layout)
    if changed:
        done.append(f"installed {', '.join(changed)} into {layout.unit_dir}")
    if write_config(layout.config_path, pool_size):
        done.append(f"wrote {layout.config_path}")
    done.append(put_on_path(layout))
    done += raise_inotify_limits(layout)
    if changed:
        _systemctl("daemon-reload")
    _systemctl("enable", "--now", "hcd.socket")
    done.append("hcd.socket is enabled and listening")
    # At boot too, not only on first use: its reconcile pass brings back the instances made
    # with --restart always.
    _systemctl("enable", "hcd.service")
    done.append("hcd.service is enabled at boot")
    # Names keep resolving while the agent restarts: DNS is a service of its own. Until the
    # agent writes its zone it waits, serving nothing.
    _systemctl("enable", "--now", DNS_UNIT)
    done.append(f"{DNS_UNIT} is enabled and running")
    # Sleeping (--idle) instances wake on a connection even while the agent is down.
    _systemctl("enable", "--now", WAKE_SOCKET_UNIT)
    done.append(f"{WAKE_SOCKET_UNIT} is enabled and listening")
    done.append(start_frontdoor())
    # Browser consoles: the proxy starts on the first console opened.
    _systemctl("enable", "--now", CONSOLE_SOCKET_UNIT)
    done.append(f"{CONSOLE_SOCKET_UNIT} is enabled and listening")
    for unit in (AGENT_UNIT, DNS_UNIT, DOOR_UNIT):
        if unit in changed:
            # A running service keeps its old unit until restarted; a stopped one starts on
            # demand. hcd may not be installed yet: that is the agent's problem, not the
            # set-up's.
            _systemctl("try-restart", unit, check=False)
    return done


def start_frontdoor() -> str:
    """The front door (nginx on 80/443) and its auth endpoint. A host without nginx, or with
    those ports taken, still gets the rest of homecloud: the door says why in its log."""
    for unit in (AUTH_SOCKET_UNIT, DOOR_UNIT):
        result = _systemctl("enable", "--now", unit, check=False)
        if not result.ok:
            return (f"{unit} did not start ({result.first_error_line()}); see "
                    f"`journalctl -u {unit}`")
    return f"{DOOR_UNIT} is enabled and running"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m homecloud.host.setup",
                                     description="Install homecloud's agent units on this host.")
    parser.add_argument("--pool-size", metavar="SIZE",
                        help="size of the embedded pool, written to a new config (e.g. 8G)")
    args = parser.parse_args(argv)
    return exit_status("hostsetup", lambda: _install(args.pool_size))


def _install(pool_size: str | None) -> int:
    try:
        if pool_size:
            parse_size(pool_size, "--pool-size")
        if os.geteuid() != 0:
            raise HostError("hostsetup needs root")
        if not systemd_booted():
            raise HostError("PID 1 is not systemd here: use a dev host "
                            "(`python3 -m homecloud.host.bootstrap up` makes one)")
        # The venv's bin directory: not resolved, since its python is a symlink to /usr/bin.
        layout = Layout(units_src=shipped_dir("units"), bindir=Path(sys.executable).parent)
        for line in setup(layout, pool_size):
            print(f"hostsetup: {line}")
    except BootstrapError as exc:
        print(f"hostsetup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
