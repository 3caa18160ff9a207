"""Starting, rebooting and removing dev hosts.

All changes to dev hosts go through one lock (an flock on the state root), so two `up`s of the
same name, or an `up` racing a `down`, cannot interleave.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from homecloud.devhost import cgroups, procs
from homecloud.devhost.host import DevHost
from homecloud.devhost.machine_units import enabled_links, hide_links
from homecloud.devhost.netplan import DEVHOST_NETWORK, DevHostAddress, NetworkPlan
from homecloud.devhost.network import (
    ensure_machine_network,
    remove_host_link,
    remove_machine_network,
)
from homecloud.devhost.spec import (
    CACHE_DIR,
    STATE_ROOT,
    DevHostPaths,
    DevHostSpec,
    validate_devhost_name,
)
from homecloud.devhost.supervisor import supervisor_argv
from homecloud.errors import HostError, NotFound
from homecloud.host.inotify_limits import raise_limits

BOOT_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
# A guest that has not finished booting may not have its signal handlers yet, so it may never
# see the poweroff request: after a failed boot, wait briefly, then kill.
FAILED_BOOT_STOP_TIMEOUT = 3.0
READY_STATES = ("running", "degraded")
NSPAWN_PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
# Pools, image builds and tests in every dev host share the machine's loop devices.
MIN_LOOP_DEVICES = 32
# The guest's processes are killed by now, but a cgroup empties only once they are fully gone.
CGROUP_RELEASE_WAIT = 5.0
# Services the machine has enabled that must not start in a dev host: dnsmasq (installed for
# the DNS benchmark, which runs its own) would take port 53 in the dev host's network namespace
# from homecloud's DNS server.
MASKED_UNITS = ("dnsmasq.service",)
Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@contextmanager
def _locked(state_root: Path) -> Iterator[None]:
    state_root.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def require_host_tools() -> None:
    if os.geteuid() != 0:
        raise HostError("dev hosts need root: run hc-devhost as root")
    for tool in ("systemd-nspawn", "nsenter", "losetup", "runuser"):
        if shutil.which(tool) is None:
            raise HostError(f"{tool} is missing: install it (apt-get install systemd-container "
                            "util-linux), or run `python3 -m homecloud.host.bootstrap up`")


def default_checkout() -> Path:
    """The source tree this code runs from; bound into the dev host at the same path."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "pyproject.toml").exists():
        raise HostError(f"{checkout} is not a homecloud checkout (no pyproject.toml): dev hosts "
                        "run the code of a checkout")
    return checkout


def default_venv() -> Path:
    """The venv of the running python; bound into the dev host at the same path."""
    if sys.prefix == sys.base_prefix:
        raise HostError(f"{sys.executable} is not in a venv: run hc-devhost from the venv made "
                        "by `python3 -m homecloud.host.bootstrap up` (/opt/homecloud/venv)")
    return Path(sys.prefix)


def check_venv(venv: Path) -> None:
    """The guest has the machine's /usr and nothing else of it: the venv's python must be
    Debian's /usr/bin/python3, not a build under /root or /opt."""
    try:
        config = (venv / "pyvenv.cfg").read_text()
    except FileNotFoundError:
        raise HostError(f"{venv} is not a venv (no pyvenv.cfg)") from None
    for line in config.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home" and not value.strip().startswith("/usr/"):
            raise HostError(f"the venv {venv} was made with the python in {value.strip()}, which "
                            "a dev host cannot see: make it with /usr/bin/python3 -m venv")


def machine_loop_devices() -> tuple[str, ...]:
    """Loop devices to bind in: the guest has no udev, so it sees only what exists now; make
    enough exist first."""
    procs.ensure_loop_devices(MIN_LOOP_DEVICES)
    numbers = sorted(int(p.name[4:]) for p in Path("/dev").glob("loop*") if p.name[4:].isdigit())
    devices = [f"/dev/loop{number}" for number in numbers]
    control = ["/dev/loop-control"] if Path("/dev/loop-control").exists() else []
    return (*control, *devices)


def get(name: str, state_root: Path = STATE_ROOT) -> DevHost:
    return DevHost.load(DevHostPaths.of(validate_devhost_name(name), state_root))


def list_devhosts(state_root: Path = STATE_ROOT) -> list[DevHost]:
    if not state_root.is_dir():
        return []
    return [DevHost.load(DevHostPaths(entry)) for entry in sorted(state_root.iterdir())
            if (entry / "devhost.json").exists()]


def boot(name: str, *, checkout: Path | None = None, venv: Path | None = None,
         private_network: bool = False, setup: bool = True, pool_size: str | None = None,
         timeout: float = BOOT_TIMEOUT, state_root: Path = STATE_ROOT,
         progress: Progress = _quiet) -> DevHost:
    """Start the dev host ``name`` (or find it running), wait until its systemd is up, and
    install homecloud inside. A dev host made here is removed again if it fails to come up."""
    validate_devhost_name(name)
    checkout = checkout or default_checkout()
    venv = venv or default_venv()
    check_venv(venv)
    require_host_tools()
    paths = DevHostPaths.of(name, state_root)
    deadline = time.monotonic() + timeout
    with _locked(state_root):
        if paths.spec.exists():
            existing = DevHost.load(paths)
            if existing.supervisor_pid is not None or existing.nspawn_pid is not None:
                progress(f"dev host {name} is already running")
                wait_ready(existing, deadline)
                if setup:  # idempotent, and picks up changed units from the checkout
                    progress(f"installing homecloud inside {name}")
                    run_hostsetup(existing, pool_size)
                return existing
        fresh = not paths.root.exists()
        address = None if private_network else _address_for(paths, state_root)
        spec = DevHostSpec(name=name, checkout=checkout, venv=venv,
                           loop_devices=machine_loop_devices(),
                           private_network=private_network,
                           address=str(address.ipv4) if address else None,
                           address6=str(address.ipv6) if address else None)
        try:
            # Dev hosts and their containers all charge their inotify instances to root.
            raise_limits()
            if spec.bridged:
                ensure_machine_network(DEVHOST_NETWORK)
            _prepare(paths, spec)
            progress(f"booting dev host {name}")
            _start_supervisor(paths, spec)
            host = DevHost(paths, spec)
            state = wait_ready(host, deadline)
            if state == "degraded":  # say which: often a service of the machine's own
                state += f": failed {', '.join(host.failed_units()) or 'units'}"
            progress(f"dev host {name} is up ({state})")
            if setup:
                progress(f"installing homecloud inside {name}")
                run_hostsetup(host, pool_size)
        except BaseException:
            _stop(paths, FAILED_BOOT_STOP_TIMEOUT)
            _release(paths)
            if fresh:
                shutil.rmtree(paths.root, ignore_errors=True)
            raise
    return host


def _address_for(paths: DevHostPaths, state_root: Path,
                 plan: NetworkPlan = DEVHOST_NETWORK) -> DevHostAddress:
    """The dev host's address: the one it had (state kept by `down --keep`), else a free one.
    The specs under the state root are the allocation table; the caller holds its lock."""
    if paths.spec.exists():
        previous = DevHostSpec.from_json(paths.spec.read_text()).network_address(plan)
        if previous is not None:
            return previous
    taken = {address.number for host in list_devhosts(state_root) if host.name != paths.name
             if (address := host.spec.network_address(plan)) is not None}
    return plan.allocate(paths.name, taken)


def _prepare(paths: DevHostPaths, spec: DevHostSpec) -> None:
    for directory in (paths.root, paths.upper, paths.state, CACHE_DIR):
        directory.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o700)
    # Each dev host is its own machine: own host name (DNS names and ULA prefixes derive from
    # it) and own machine id (journald refuses to share the machine's).
    (paths.upper / "hostname").write_text(f"{spec.name}\n")
    machine_id = paths.upper / "machine-id"
    if not machine_id.exists():
        machine_id.write_text(f"{uuid.uuid4().hex}\n")
    units = paths.upper / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        if not (units / unit).is_symlink():
            (units / unit).symlink_to("/dev/null")
    hide_links(units, enabled_links())
    paths.spec.write_text(spec.to_json())
    paths.stopping.unlink(missing_ok=True)
    paths.network_ready.unlink(missing_ok=True)
    paths.console_log.write_text("")


def _start_supervisor(paths: DevHostPaths, spec: DevHostSpec) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(spec.checkout), env.get("PYTHONPATH", "")) if p)
    with paths.console_log.open("ab") as log:
        # Returns once the supervisor has forked away and its pid is recorded.
        result = subprocess.run(supervisor_argv(spec.name), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/",
                                start_new_session=True, check=False, timeout=60)
    if result.returncode != 0:
        raise HostError(f"the supervisor of dev host {spec.name} did not start; the end of "
                        f"{paths.console_log}:\n{DevHost(paths, spec).console_tail()}")


def wait_ready(host: DevHost, deadline: float, previous_nspawn: int | None = None) -> str:
    """Wait until the guest's systemd has finished booting; return its state (running or
    degraded). ``previous_nspawn`` is an nspawn pid to ignore (the one before a reboot)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _boot_error(host, "did not finish booting in time")
        nspawn = host.nspawn_pid
        if nspawn is None or nspawn == previous_nspawn:
            if host.supervisor_pid is None and (nspawn is None or not procs.alive(nspawn)):
                raise _boot_error(host, "stopped while booting")
            time.sleep(0.05)
            continue
        init = procs.container_init(nspawn)
        if init is None or not Path(f"/proc/{init}/root/run/systemd/private").exists() \
                or not _network_ready(host, nspawn):
            time.sleep(0.05)
            continue
        try:
            result = host.run("systemctl", "is-system-running", "--wait", check=False,
                              timeout=remaining)
        except subprocess.TimeoutExpired:
            continue
        state = result.stdout.strip()
        if state in READY_STATES:
            return state
        if state in ("maintenance", "stopping", "offline") and procs.alive(init):
            raise _boot_error(host, f"booted into state {state!r}")
        time.sleep(0.05)


def _network_ready(host: DevHost, nspawn: int) -> bool:
    """Whether the supervisor has configured the network of this nspawn's guest."""
    if not host.spec.bridged:
        return True
    return procs.read_pid(host.paths.network_ready, f"--machine={host.name}") == nspawn


def _boot_error(host: DevHost, what: str) -> HostError:
    return HostError(f"dev host {host.name} {what}; the end of its console log "
                     f"({host.paths.console_log}):\n{host.console_tail()}")


def run_hostsetup(host: DevHost, pool_size: str | None = None) -> None:
    argv = [host.python, "-m", "homecloud.host.setup"]
    if pool_size:
        argv += ["--pool-size", pool_size]
    result = host.run(*argv, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise HostError(f"installing homecloud inside dev host {host.name} failed "
                        f"(exit {result.returncode}): {output}")


def reboot(name: str, *, timeout: float = BOOT_TIMEOUT, state_root: Path = STATE_ROOT) -> DevHost:
    """`systemctl reboot` inside and wait until the dev host is back up."""
    host = get(name, state_root)
    deadline = time.monotonic() + timeout
    with _locked(state_root):
        before = host.nspawn_pid
        if not host.running:
            raise host.not_running()
        host.run("systemctl", "reboot", "--no-block", check=False, timeout=30)
        wait_ready(host, deadline, previous_nspawn=before)
    return host


def shutdown(name: str, *, keep: bool = False, timeout: float = STOP_TIMEOUT,
             state_root: Path = STATE_ROOT) -> None:
    """Power the dev host off, kill what is left, release its loop devices and (unless ``keep``)
    remove its state."""
    validate_devhost_name(name)
    paths = DevHostPaths.of(name, state_root)
    with _locked(state_root):
        if not paths.root.exists():
            raise NotFound(f"no dev host named {name!r} (see `hc-devhost ls`)")
        _stop(paths, timeout)
        _release(paths)
        if not keep:
            shutil.rmtree(paths.root)


def shutdown_all(*, timeout: float = STOP_TIMEOUT, state_root: Path = STATE_ROOT,
                 plan: NetworkPlan = DEVHOST_NETWORK) -> tuple[list[str], bool]:
    """Remove every dev host, then the machine's side of their network (the bridge and our
    nftables table) unless something is still attached to the bridge. Return the names removed
    and whether the network is gone."""
    names = [host.name for host in list_devhosts(state_root)]
    for name in names:
        shutdown(name, timeout=timeout, state_root=state_root)
    with _locked(state_root):  # a dev host booting meanwhile is attached before the lock frees
        return names, remove_machine_network(plan)


def _stop(paths: DevHostPaths, timeout: float) -> None:
    if not paths.spec.exists():
        return
    host = DevHost.load(paths)
    paths.stopping.touch()
    supervisor, nspawn = host.supervisor_pid, host.nspawn_pid
    init = procs.container_init(nspawn) if nspawn is not None else None
    # nspawn turns SIGTERM into SIGRTMIN+4 for the guest's systemd (--kill-signal): a clean
    # poweroff. A second SIGTERM would make it kill the guest at once, so send one only.
    procs.signal_pid(nspawn if nspawn is not None else supervisor, signal.SIGTERM)
    if not procs.wait_gone([supervisor, nspawn, init], timeout):
        # The supervisor first, so it starts nothing more; then look again, because an nspawn
        # or a guest that was still starting when we began has a pid by now. The guest's PID 1
        # outlives a killed nspawn, and killing it kills everything in its pid namespace.
        procs.kill_tree_now([supervisor])
        procs.wait_gone([supervisor], 5)
        nspawn = host.nspawn_pid or nspawn
        init = (procs.container_init(nspawn) if nspawn is not None else None) or init
        procs.kill_tree_now([init, nspawn])
        if not procs.wait_gone([supervisor, nspawn, init], 10):
            raise HostError(f"dev host {host.name} would not stop (pids {supervisor}, {nspawn}, "
                            f"{init})")
    for path in (paths.supervisor_pid, paths.nspawn_pid, paths.network_ready, paths.stopping):
        path.unlink(missing_ok=True)


def _release(paths: DevHostPaths) -> None:
    """Undo what may outlive the guest: loop devices over its files, stray mounts."""
    if not paths.root.exists():
        return
    for loop in procs.loop_devices_backed_under(paths.root):
        subprocess.run(["losetup", "--detach", loop.name], check=False)
    for mount in procs.mounts_under(paths.root):
        subprocess.run(["umount", "--lazy", str(mount)], check=False)
    remove_host_link(paths.name)
    cgroups.remove(paths.name, wait=CGROUP_RELEASE_WAIT)
    # nspawn removes this itself when it exits normally, not when it is killed.
    propagate = NSPAWN_PROPAGATE_DIR / paths.name
    if propagate.is_dir() and not procs.mounts_under(propagate):
        shutil.rmtree(propagate, ignore_errors=True)
