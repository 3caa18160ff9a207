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

from homecloud.devhost import cgroups
from homecloud.devhost.netplan import DEVHOST_NETWORK
from homecloud.devhost.network import configure_guest, ensure_machine_network, wait_for_guest_link
from homecloud.devhost.procs import container_init, write_pid
from homecloud.devhost.spec import REBOOT_EXIT_CODE, DevHostPaths, DevHostSpec, nspawn_argv
from homecloud.errors import HostError

# From nspawn's start to `host0` in the guest's namespace: well under a second normally.
GUEST_LINK_TIMEOUT = 60.0

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


def _configure_network(paths: DevHostPaths, spec: DevHostSpec,
                       nspawn: subprocess.Popen[bytes]) -> None:
    """Give the guest's `host0` its addresses, then record that this nspawn's guest has them.
    Done here, on every start, because a reboot brings a fresh namespace with a bare `host0`."""
    address = spec.network_address()
    assert address is not None  # only called for bridged dev hosts

    def guest_init() -> int | None:
        if nspawn.poll() is not None:
            raise HostError(f"systemd-nspawn exited with {nspawn.returncode} while starting")
        return container_init(nspawn.pid)

    init = wait_for_guest_link(guest_init, GUEST_LINK_TIMEOUT)
    configure_guest(init, DEVHOST_NETWORK, address)
    write_pid(paths.network_ready, nspawn.pid)


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
            if spec.bridged:  # nspawn needs the bridge; someone may have removed it
                ensure_machine_network(DEVHOST_NETWORK)
            cgroups.remove(spec.name)  # left by the guest before a reboot, or a killed one
            # In its own cgroup, not ours: see cgroups.py. (preexec_fn is safe: no threads.)
            current = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sys.stdout,
                                       stderr=subprocess.STDOUT,
                                       preexec_fn=lambda: cgroups.enter(spec.name))
            write_pid(paths.nspawn_pid, current.pid)
            if paths.stopping.exists():  # a SIGTERM came before `current` was set
                current.send_signal(signal.SIGTERM)
            elif spec.bridged:
                try:
                    _configure_network(paths, spec, current)
                except HostError as exc:
                    # A dev host without its network would fail tests in confusing ways.
                    _log(f"setting up the network of {spec.name} failed: {exc.message}; "
                         "powering it off")
                    paths.stopping.touch()
                    current.send_signal(signal.SIGTERM)
            rc = current.wait()
            _log(f"systemd-nspawn exited with {rc}")
            if rc != REBOOT_EXIT_CODE:
                break
            _log("the guest asked for a reboot: starting it again")
    finally:
        cgroups.remove(spec.name)
        paths.network_ready.unlink(missing_ok=True)
        paths.nspawn_pid.unlink(missing_ok=True)
        paths.supervisor_pid.unlink(missing_ok=True)
    return rc
