"""One dev host as seen from the machine: its processes, and running commands inside it."""

from __future__ import annotations

import json as jsonlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homecloud.devhost import procs
from homecloud.devhost.network import host_side_link
from homecloud.devhost.spec import DevHostPaths, DevHostSpec
from homecloud.devhost.supervisor import SUPERVISE_COMMAND
from homecloud.errors import HostError, NotFound

# Bounds a command run through the API when the caller gives no timeout: a hung command in a
# test must fail the test, not the CI run.
DEFAULT_TIMEOUT = 600.0


class DevHostCommandError(subprocess.CalledProcessError):
    """A command inside the dev host failed; the message carries its output, for test logs."""

    def __str__(self) -> str:
        text = f"{' '.join(map(str, self.cmd))!s} exited with {self.returncode}"
        for label, data in (("stdout", self.stdout), ("stderr", self.stderr)):
            if data:
                text += f"\n--- {label} ---\n{str(data)[-4000:]}"
        return text


@dataclass(frozen=True)
class DevHost:
    """A dev host: a systemd-nspawn container booting a real systemd on the machine's /usr."""

    paths: DevHostPaths
    spec: DevHostSpec

    @classmethod
    def load(cls, paths: DevHostPaths) -> DevHost:
        try:
            spec = DevHostSpec.from_json(paths.spec.read_text())
        except FileNotFoundError:
            raise NotFound(f"no dev host named {paths.name!r} (see `hc-devhost ls`)") from None
        return cls(paths, spec)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def supervisor_pid(self) -> int | None:
        return procs.read_pid(self.paths.supervisor_pid, SUPERVISE_COMMAND, self.name)

    @property
    def nspawn_pid(self) -> int | None:
        return procs.read_pid(self.paths.nspawn_pid, f"--machine={self.name}")

    def init_pid(self) -> int | None:
        """The guest's PID 1 as seen from the machine, or None when it is not running."""
        nspawn = self.nspawn_pid
        return procs.container_init(nspawn) if nspawn is not None else None

    @property
    def pid(self) -> int:
        """The guest's PID 1 (it changes when the dev host reboots)."""
        pid = self.init_pid()
        if pid is None:
            raise self.not_running()
        return pid

    def not_running(self) -> HostError:
        return HostError(f"dev host {self.name!r} is not running: start it with "
                         f"`hc-devhost up {self.name}`")

    @property
    def running(self) -> bool:
        return self.init_pid() is not None

    @property
    def address(self) -> str | None:
        """Its IPv4 address on the dev hosts' bridge (reachable from the machine and from
        the other dev hosts), or None when it has no network of its own."""
        return self.spec.address

    @property
    def address6(self) -> str | None:
        return self.spec.address6

    def host_link(self) -> str | None:
        """The machine's end of the dev host's link (on the bridge), while it runs."""
        init = self.init_pid()
        return host_side_link(init) if init is not None and self.spec.bridged else None

    @property
    def python(self) -> str:
        """The venv's python, at the same path inside as on the machine."""
        return str(self.spec.python)

    @property
    def dbus_address(self) -> bytes:
        """The guest's system bus, for pystemd from the machine (DBusAddress(...))."""
        return f"unix:path=/proc/{self.pid}/root/run/dbus/system_bus_socket".encode()

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of commands run inside: the guest's PATH plus the venv, and the
        checkout importable, so what runs is this checkout's code."""
        env = {
            "PATH": self.spec.guest_path,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "TERM": os.environ.get("TERM", "dumb"),
            "PYTHONPATH": str(self.spec.checkout),
        }
        env.update(extra or {})
        return env

    def command(self, argv: list[str], user: str | None = None, cwd: str = "/") -> list[str]:
        """The machine-side argv that runs ``argv`` inside the guest (in all its namespaces)."""
        inner = ["env", "-C", cwd, *argv]
        if user is not None:
            inner = ["runuser", "-u", user, "--", *inner]
        return ["nsenter", "-t", str(self.pid), "-a", "--", *inner]

    def run(self, *argv: str | Path, check: bool = True, input: str | None = None,
            user: str | None = None, timeout: float | None = DEFAULT_TIMEOUT, cwd: str = "/",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside and capture its output (text)."""
        args = [str(arg) for arg in argv]
        result = subprocess.run(self.command(args, user=user, cwd=cwd), input=input,
                                capture_output=True, text=True, timeout=timeout,
                                env=self.environment(env),
                                stdin=subprocess.DEVNULL if input is None else None)
        if check and result.returncode != 0:
            raise DevHostCommandError(result.returncode, args, result.stdout, result.stderr)
        return result

    def hc_argv(self) -> list[str]:
        hc = self.spec.venv_bin / "hc"
        if hc.exists():
            return [str(hc)]
        # The venv may not have homecloud installed (a scratch venv): run the same entry point.
        return [self.python, "-c", "import sys; from homecloud.cli.main import main; "
                "sys.argv[0] = 'hc'; sys.exit(main())"]

    def hc(self, *args: str, check: bool = True, json: bool = False,
           user: str | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Run the `hc` CLI inside. With json=True, add --json and return the parsed output."""
        argv = [*self.hc_argv(), *args]
        if json and "--json" not in args:
            argv.append("--json")
        result = self.run(*argv, check=check, user=user, timeout=timeout)
        if json:
            return jsonlib.loads(result.stdout) if result.stdout.strip() else None
        return result

    def system_state(self) -> str | None:
        """`systemctl is-system-running` inside, or None when the dev host is not running."""
        if not self.running:
            return None
        try:
            result = self.run("systemctl", "is-system-running", check=False, timeout=10)
        except (subprocess.TimeoutExpired, HostError):
            return None
        return result.stdout.strip() or None

    def failed_units(self) -> list[str]:
        """The units that failed inside (what makes its state "degraded")."""
        result = self.run("systemctl", "list-units", "--failed", "--plain", "--no-legend",
                          check=False, timeout=10)
        return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]

    def status(self) -> dict[str, Any]:
        init = self.init_pid()
        return {
            "name": self.name,
            "state": "running" if init is not None else "stopped",
            "system_state": self.system_state() if init is not None else None,
            "pid": init,
            "nspawn_pid": self.nspawn_pid,
            "supervisor_pid": self.supervisor_pid,
            "state_dir": str(self.paths.root),
            "checkout": str(self.spec.checkout),
            "venv": str(self.spec.venv),
            "private_network": self.spec.private_network,
            "address": self.address,
            "address6": self.address6,
            "host_link": self.host_link() if init is not None else None,
        }

    def console_tail(self, lines: int = 30) -> str:
        try:
            text = self.paths.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:]) or "(console log is empty)"


def guest_file(host: DevHost, path: str | Path) -> Path:
    """A path inside the guest, reached from the machine through /proc/PID/root."""
    return Path(f"/proc/{host.pid}/root") / Path(path).relative_to("/")
