"""The small detached process that keeps one dev host's systemd-nspawn running.

systemd-nspawn exits with 133 when the guest reboots; a real machine comes back, so the
supervisor starts nspawn again. Any other exit (poweroff, a crash, `down`) ends the supervisor.
`up` runs `python -m homecloud.devhost.main _supervise NAME` in a new session; that process
forks the supervisor proper, records its pid and exits, so when `up` sees it return the supervisor
is known, is nobody's child (no zombie in a long-lived caller such as pytest) and no terminal
signal reaches it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

from homecloud.devhost.procs import write_pid
from homecloud.devhost.spec import REBOOT_EXIT_CODE, DevHostPaths, DevHostSpec, nspawn_argv

SUPERVISE_COMMAND = "_supervise"


def supervisor_argv(name: str) -> list[str]:
    """How `up` starts the supervisor: the same python (the caller makes the checkout
    importable through PYTHONPATH)."""
    return [sys.executable, "-m", "homecloud.devhost.main", SUPERVISE_COMMAND, name]


def daemonize(paths: DevHostPaths) -> int:
    """Fork the supervisor, record its pid and return 0 in the parent; run it in the child."""
    child = os.fork()
    if child:
        write_pid(paths.supervisor_pid, child)
        return 0
    try:
        code = supervise(paths)
    except BaseException as exc:  # the console log is the only place anyone will look
        _log(f"supervisor failed: {exc!r}")
        code = 1
    sys.stdout.flush()
    os._exit(code if 0 <= code < 256 else 1)


def _log(message: str) -> None:
    # stdout is the console log: keep our own lines recognisable among the guest's.
    print(f"hc-devhost[{time.strftime('%H:%M:%S')}]: {message}", flush=True)


def supervise(paths: DevHostPaths) -> int:
    """Run nspawn until the guest powers off; return nspawn's last exit code."""
    spec = DevHostSpec.from_json(paths.spec.read_text())
    argv = nspawn_argv(spec, paths)
    current: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        # `down` normally signals nspawn itself; a SIGTERM to us means the same: power off.
        paths.stopping.touch()
        if current is not None and current.poll() is None:
            current.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    rc = 0
    try:
        while not paths.stopping.exists():
            _log(f"starting {spec.name}")
            current = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sys.stdout,
                                       stderr=subprocess.STDOUT)
            write_pid(paths.nspawn_pid, current.pid)
            if paths.stopping.exists():  # a SIGTERM came before `current` was set
                current.send_signal(signal.SIGTERM)
            rc = current.wait()
            _log(f"systemd-nspawn exited with {rc}")
            if rc != REBOOT_EXIT_CODE:
                break
            _log("the guest asked for a reboot: starting it again")
    finally:
        paths.nspawn_pid.unlink(missing_ok=True)
        paths.supervisor_pid.unlink(missing_ok=True)
    return rc
