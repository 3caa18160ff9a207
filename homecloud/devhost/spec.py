"""What a dev host is made of: its name, where its state lives, and the nspawn command line.

Pure data and pure functions: nothing here touches the system, so it is unit-tested directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from homecloud.devhost.netplan import DEVHOST_NETWORK, DevHostAddress, NetworkPlan
from homecloud.names import validate_host_name

STATE_ROOT = Path(os.environ.get("HC_DEVHOST_ROOT", "/var/tmp/hc-devhost"))
# debootstrap and image caches, shared by every dev host (and the machine itself).
CACHE_DIR = Path("/var/cache/homecloud")
# Inside the dev host: where the agent keeps its database and the embedded pool file.
GUEST_STATE_DIR = Path("/var/lib/homecloud")
# systemd-nspawn exits with this code when the guest asked for a reboot.
REBOOT_EXIT_CODE = 133
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

def validate_devhost_name(name: str) -> str:
    """The name becomes the guest's host name."""
    return validate_host_name(name, "dev host name")


@dataclass(frozen=True)
class DevHostPaths:
    """The files of one dev host on the machine, all under ``STATE_ROOT/NAME``."""

    root: Path

    @classmethod
    def of(cls, name: str, state_root: Path = STATE_ROOT) -> DevHostPaths:
        return cls(state_root / name)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def upper(self) -> Path:
        """Overlay upper directory for the guest's /etc: the guest's changes to /etc land here."""
        return self.root / "etc-upper"

    @property
    def state(self) -> Path:
        """Bound at /var/lib/homecloud inside, so it outlives a reboot of the dev host."""
        return self.root / "state"

    @property
    def spec(self) -> Path:
        return self.root / "devhost.json"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"

    @property
    def supervisor_pid(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def nspawn_pid(self) -> Path:
        return self.root / "nspawn.pid"

    @property
    def network_ready(self) -> Path:
        """Holds the pid of the systemd-nspawn whose guest has its network configured: the
        supervisor writes it after each (re)start, `up` and `reboot` wait for it."""
        return self.root / "network.ready"

    @property
    def stopping(self) -> Path:
        """Present while `down` runs: tells the supervisor not to start nspawn again."""
        return self.root / "stopping"


@dataclass(frozen=True)
class DevHostSpec:
    """How a dev host is started; written to devhost.json so the supervisor and later commands
    (exec, reboot) use the same settings as `up` did."""

    name: str
    checkout: Path
    venv: Path
    loop_devices: tuple[str, ...] = ()
    # No network at all but loopback (no bridge, no address).
    private_network: bool = False
    # On the dev hosts' bridge (netplan.py); None with private_network, or for a dev host
    # started before dev hosts had their own network (it shares the machine's).
    address: str | None = None
    address6: str | None = None

    @property
    def venv_bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.venv_bin / "python"

    @property
    def guest_path(self) -> str:
        """PATH inside: the system first, then the venv, so `hc` is found but `python3` stays
        Debian's."""
        return f"{SYSTEM_PATH}:{self.venv_bin}"

    @property
    def bridged(self) -> bool:
        return self.address is not None and not self.private_network

    def network_address(self, plan: NetworkPlan = DEVHOST_NETWORK) -> DevHostAddress | None:
        if self.address is None or self.address6 is None:
            return None
        ipv4 = IPv4Address(self.address)
        return DevHostAddress(plan.number_of(ipv4), ipv4, IPv6Address(self.address6))

    def to_json(self) -> str:
        data = asdict(self)
        data.update(checkout=str(self.checkout), venv=str(self.venv),
                    loop_devices=list(self.loop_devices))
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DevHostSpec:
        data = json.loads(text)
        return cls(name=data["name"], checkout=Path(data["checkout"]), venv=Path(data["venv"]),
                   loop_devices=tuple(data.get("loop_devices", ())),
                   private_network=bool(data.get("private_network", False)),
                   address=data.get("address"), address6=data.get("address6"))


def nspawn_argv(spec: DevHostSpec, paths: DevHostPaths,
                plan: NetworkPlan = DEVHOST_NETWORK) -> list[str]:
    """The systemd-nspawn command that boots the dev host: a volatile root with the machine's
    own /usr, a private writable /etc over the machine's, and the few directories shared with the
    machine bound at the same paths."""
    argv = [
        "systemd-nspawn",
        "--directory=/",
        "--volatile=yes",
        # No systemd on the machine: nothing to register with, no scope to create.
        "--register=no",
        "--keep-unit",
        f"--machine={spec.name}",
        "--boot",
        "--console=pipe",
        # SIGTERM to nspawn powers the guest off (the default, SIGRTMIN+3, only halts it).
        "--kill-signal=SIGRTMIN+4",
        f"--overlay=/etc:{paths.upper}:/etc",
        f"--bind={paths.state}:{GUEST_STATE_DIR}",
        f"--bind={CACHE_DIR}",
        f"--bind={spec.checkout}",
        f"--bind={spec.venv}",
    ]
    argv += [f"--bind={device}" for device in spec.loop_devices]
    if spec.private_network:
        argv.append("--private-network")
    elif spec.bridged:
        # Its own network namespace, `host0` inside, the other end on the bridge.
        argv.append(f"--network-bridge={plan.bridge}")
    return argv
