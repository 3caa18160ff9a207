"""The systemd timers that run policies: unit files on disk (they outlive a reboot), enabled
for timers.target, so `systemctl list-timers` shows each policy's next run.

One template service, ``hc-policy@.service`` (shipped in units/), runs ``hc policy run NAME``;
each policy adds a timer ``hc-policy@NAME.timer`` that starts it.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

from homecloud.errors import HomecloudError, HostError
from homecloud.files import write_if_changed
from homecloud.resources import shipped_dir
from homecloud.snapshots.schedule import POLICY_UNIT_PREFIX, render_timer, timer_unit
from homecloud.systemd.transient import Systemd

UNIT_DIR = Path("/etc/systemd/system")
# Where systemd keeps a Persistent= timer's last run; it outlives the timer's unit file.
STAMP_DIR = Path("/var/lib/systemd/timers")
TEMPLATE = f"{POLICY_UNIT_PREFIX}.service"
WANTS = "timers.target.wants"


def bindir() -> Path:
    """Where ``hc`` is: beside the agent's interpreter (a venv), else on the PATH."""
    here = Path(sys.executable).parent
    if (here / "hc").exists():
        return here
    found = shutil.which("hc")
    if found is None:
        raise HostError("cannot find the `hc` command that policy timers run; reinstall "
                        "homecloud (python3 -m homecloud.host.setup)")
    return Path(found).parent


class PolicyTimers:
    def __init__(self, systemd: Systemd, unit_dir: Path = UNIT_DIR,
                 stamp_dir: Path = STAMP_DIR) -> None:
        self.systemd = systemd
        self.unit_dir = unit_dir
        self.stamp_dir = stamp_dir

    def install(self, instance: str, every: int) -> None:
        """Write (or rewrite) the policy's timer, enable it and (re)start it."""
        template = (shipped_dir("units") / TEMPLATE).read_text()
        changed = write_if_changed(self.unit_dir / TEMPLATE,
                                   template.replace("@BINDIR@", str(bindir())))
        unit = timer_unit(instance)
        if not (self.unit_dir / unit).exists():
            # A new policy: the last run of an earlier, removed one of this instance must not
            # count as missed (Persistent= would start a run the moment the timer starts).
            self._forget_last_run(unit)
        changed |= write_if_changed(self.unit_dir / unit, render_timer(instance, every))
        link = self.unit_dir / WANTS / unit
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(self.unit_dir / unit)
            changed = True
        if changed:
            self._reload()
            # A changed calendar takes effect when the timer restarts.
            self.systemd.stop_unit(unit)
        self.systemd.start_unit(unit)

    def remove(self, instance: str) -> None:
        unit = timer_unit(instance)
        self.systemd.stop_unit(unit)
        with contextlib.suppress(FileNotFoundError):
            (self.unit_dir / WANTS / unit).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.unit_dir / unit).unlink()
        self._reload()
        self.systemd.reset_failed(unit)
        self._forget_last_run(unit)

    def _forget_last_run(self, unit: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.stamp_dir / f"stamp-{unit}").unlink()

    def installed(self) -> set[str]:
        """Instances whose policy timer is on disk."""
        return {path.name[len(POLICY_UNIT_PREFIX):-len(".timer")]
                for path in self.unit_dir.glob(f"{POLICY_UNIT_PREFIX}*.timer")}

    def _reload(self) -> None:
        try:
            self.systemd.bus.manager(b"Reload", [])
        except Exception as exc:
            raise HomecloudError(f"systemd could not reload its units: {exc}") from exc
