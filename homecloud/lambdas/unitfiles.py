"""A lambda's units on disk (/etc/systemd/system), so its socket listens from boot on without
the agent: written whole (a new file renamed over the old), enabled through
sockets.target.wants, removed without a trace."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from homecloud.errors import HomecloudError
from homecloud.lambdas.spec import LambdaSpec
from homecloud.lambdas.units import (
    Runtime,
    render_service,
    render_socket,
    service_unit,
    socket_unit,
)
from homecloud.systemd.transient import Systemd, UnitStatus

UNIT_DIR = Path("/etc/systemd/system")
WANTS = "sockets.target.wants"
# The first line of every unit file homecloud writes for a lambda (units.py).
OWN_MARK = "# Written by homecloud"


def default_runtime(max_body: int) -> Runtime:
    """This host's Python (the real file: the sandbox does without the venv) and spawner."""
    return Runtime(os.path.realpath(sys.executable),
                   str(Path(__file__).with_name("spawner.py")), max_body)


class LambdaUnits:
    def __init__(self, systemd: Systemd, runtime: Runtime, unit_dir: Path = UNIT_DIR) -> None:
        self.systemd = systemd
        self.runtime = runtime
        self.unit_dir = unit_dir

    def foreign(self, name: str) -> str | None:
        """A unit of ``name``'s that is not a lambda's (a unit homecloud ships, or the
        user's own), which writing the lambda's would override; None if there is none."""
        for unit in (socket_unit(name), service_unit(name)):
            path = self.unit_dir / unit
            if path.exists() and not path.read_text().startswith(OWN_MARK):
                return unit
            if not path.exists() and self.systemd.unit_status(unit) is not None:
                return unit
        return None

    def install(self, spec: LambdaSpec, code: Path) -> UnitStatus:
        """Write the lambda's units, enable its socket and make it listen; the socket's
        status as it listens."""
        files = {socket_unit(spec.name): render_socket(spec),
                 service_unit(spec.name): render_service(spec, str(code), self.runtime)}
        for unit, text in files.items():
            path = self.unit_dir / unit
            path.with_name(f".{unit}.new").write_text(text)
            os.replace(path.with_name(f".{unit}.new"), path)
        self.enable(spec.name)
        self.reload()
        return self.systemd.start_unit(socket_unit(spec.name))

    def enable(self, name: str) -> None:
        wants = self.unit_dir / WANTS / socket_unit(name)
        wants.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            wants.symlink_to(f"../{socket_unit(name)}")

    def stop(self, name: str, timeout: float | None = None) -> None:
        """Stop the lambda (running requests finish) and keep it stopped after a reboot."""
        (self.unit_dir / WANTS / socket_unit(name)).unlink(missing_ok=True)
        for unit in (service_unit(name), socket_unit(name)):
            self.systemd.stop_unit(unit, timeout)
            self.systemd.reset_failed(unit)

    def remove(self, name: str) -> None:
        """Stop the lambda and remove its units. Idempotent."""
        self.stop(name)
        for unit in (socket_unit(name), service_unit(name)):
            (self.unit_dir / unit).unlink(missing_ok=True)
        self.reload()

    def reload(self) -> None:
        """systemd reads the unit files again (the call returns when it has)."""
        try:
            self.systemd.bus.manager(b"Reload", [])
        except Exception as exc:
            raise HomecloudError(f"systemd could not reload its units: {exc}") from exc
