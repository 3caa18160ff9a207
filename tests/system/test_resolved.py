"""The host resolves instance names through systemd-resolved (homecloud/network/resolved.py).

systemd-resolved must not be installed on the machine (its postinst takes /etc/resolv.conf
over), and dev hosts share the machine's /usr: the Debian package matching the installed
systemd is downloaded once into the cache every dev host binds (/var/cache/homecloud), unpacked
there, and run in this module's own dev host by its own unit file, whose ExecStart points into
the unpacked tree. Without the package (no network, no apt) the tests skip.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from homecloud.devhost import DevHost
from homecloud.devhost.spec import CACHE_DIR

pytestmark = pytest.mark.system

PACKAGE = "systemd-resolved"
DEBS = CACHE_DIR / "test-debs"
UNIT = "systemd-resolved.service"
UNIT_PATH = f"/run/systemd/system/{UNIT}"  # runtime unit: gone with the dev host
PACKAGED_EXEC = "ExecStart=!!/lib/systemd/systemd-resolved"
POLICY = "usr/share/dbus-1/system.d/org.freedesktop.resolve1.conf"
SYSUSERS = "usr/lib/sysusers.d/systemd-resolve.conf"


def _run(*argv: str, cwd: Path | None = None, timeout: float = 180) -> str | None:
    """Run a command on the machine; None when it succeeded, else its last error line."""
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{argv[0]} did not finish within {timeout:.0f} s"
    if result.returncode == 0:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"{argv[0]} exited with {result.returncode}"


def unpacked_package() -> Path:
    """The package's files, unpacked under DEBS (once: later sessions reuse them); skips when
    the package cannot be had."""
    for tool in ("apt-get", "dpkg-deb", "dpkg-query"):
        if shutil.which(tool) is None:
            pytest.skip(f"getting {PACKAGE} needs {tool} (a Debian machine)")
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "systemd"],
                             capture_output=True, text=True).stdout.strip()
    if not version:
        pytest.skip(f"{PACKAGE} must match the installed systemd, and dpkg knows of none")
    tree = DEBS / f"{PACKAGE}-{version}"
    if (tree / "lib/systemd/systemd-resolved").exists():
        return tree
    DEBS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DEBS, prefix=".download-") as scratch:
        download = ("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
                    f"{PACKAGE}={version}")
        error = _run(*download, cwd=Path(scratch))
        if error and _run("apt-get", "update", "-q") is None:  # stale or no package lists
            error = _run(*download, cwd=Path(scratch))
        if error:
            pytest.skip(f"cannot download {PACKAGE} {version} (no network?): {error}")
        deb = next(Path(scratch).glob("*.deb"))
        error = _run("dpkg-deb", "-x", str(deb), f"{scratch}/tree")
        assert error is None, error
        shutil.move(deb, DEBS / deb.name)
        # A rename, so a concurrent session sees the whole tree or none.
        Path(scratch, "tree").rename(tree)
    return tree


@dataclass(frozen=True)
class Host:
    host: DevHost
    resolvectl: str
    tree: Path

    def network(self) -> dict[str, object]:
        info = self.host.hc("network", "ls", json=True)
        assert info["error"] is None, info
        return dict(info)

    def link(self, verb: str) -> str:
        """`resolvectl VERB hc0`'s answer, without its "Link N (hc0):" prefix."""
        out = self.host.run(self.resolvectl, verb, "hc0").stdout
        return " ".join(out.split(":", 1)[1].split())

    def query(self, name: str) -> str:
        return self.host.run(self.resolvectl, "query", "--cache=no", name).stdout

    def restart_agent(self) -> str:
        """Restart hcd (its start sets the network up); returns its journal since."""
        self.host.run("systemctl", "restart", "hcd.service")
        invocation = self.host.run("systemctl", "show", "-p", "InvocationID", "--value",
                                   "hcd.service").stdout.strip()
        return self.host.run("journalctl", f"_SYSTEMD_INVOCATION_ID={invocation}",
                             "-o", "cat", "--no-pager").stdout


@pytest.fixture(scope="module")
def host(private_devhost: DevHost) -> Host:
    tree = unpacked_package()
    private_devhost.hc("image", "build", "busybox", "-q")
    return Host(private_devhost, str(tree / "usr/bin/resolvectl"), tree)


@pytest.fixture(scope="module")
def resolved(host: Host) -> Iterator[Host]:
    """systemd-resolved running in the dev host, as its package's unit runs it."""
    dev = host.host
    dev.run("systemd-sysusers", str(host.tree / SYSUSERS))
    dev.run("install", "-m", "644", str(host.tree / POLICY), "/etc/dbus-1/system.d/")
    dev.run("busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
            "org.freedesktop.DBus", "ReloadConfig")
    unit = (host.tree / "lib/systemd/system" / UNIT).read_text()
    assert PACKAGED_EXEC in unit
    unit = unit.replace(PACKAGED_EXEC, f"ExecStart=!!{host.tree}/lib/systemd/systemd-resolved")
    dev.run("tee", UNIT_PATH, input=unit)
    dev.run("systemctl", "daemon-reload")
    dev.run("systemctl", "start", UNIT)
    yield host
    dev.run("systemctl", "stop", UNIT)
    dev.run("rm", "-f", UNIT_PATH)
    dev.run("systemctl", "daemon-reload")


def doctor_check(host: Host) -> dict[str, str]:
    report = host.host.hc("doctor", json=True, check=False)
    return next(c for c in report["checks"] if c["name"] == "resolved")


# Runs first, before the `resolved` fixture starts it.
def test_without_resolved_the_agent_sets_the_network_up_and_says_nothing(host: Host) -> None:
    assert host.host.run("busctl", "status", "org.freedesktop.resolve1",
                         check=False).returncode != 0
    journal = host.restart_agent()
    assert "systemd-resolved" not in journal, journal
    assert host.network()["bridge"] == "hc0"
    check = doctor_check(host)
    assert (check["status"], check["detail"]) == (
        "skipped", "systemd-resolved is not running: nothing to register with")


def test_the_host_resolves_instance_names_through_resolved(resolved: Host) -> None:
    journal = resolved.restart_agent()
    net = resolved.network()
    zone = net["zone"]
    assert f"systemd-resolved asks hc0 for *.{zone}" in journal, journal
    # The link: the bridge's addresses, our zone and the reverse zones, routing only.
    assert resolved.link("dns") == f"{net['gateway4']} {net['gateway6']}"
    domains = resolved.link("domain").split()
    assert domains[0] == f"~{zone}" and len(domains) == 3, domains
    assert domains[1].endswith(".in-addr.arpa") and domains[2].endswith(".ip6.arpa")
    assert resolved.link("default-route") == "no"
    print(resolved.host.run(resolved.resolvectl, "status", "hc0").stdout)

    resolved.host.hc("run", "busybox", "--name", "x", "-d", "--", "sleep", "1000")
    x = next(i for i in resolved.network()["instances"]  # type: ignore[attr-defined]
             if i["name"] == "x")
    answer = resolved.query(f"x.{zone}")
    print(answer)
    assert x["ipv4"] in answer and x["ipv6"] in answer and "link: hc0" in answer
    # And back: the reverse zones go to hc-dns too.
    assert f"x.{zone}" in resolved.query(x["ipv4"])
    assert f"x.{zone}" in resolved.query(x["ipv6"])
    assert doctor_check(resolved)["status"] == "ok"


def test_resolved_keeps_the_registration_across_its_restart(resolved: Host) -> None:
    zone = resolved.network()["zone"]
    resolved.host.run("systemctl", "restart", UNIT)
    assert resolved.link("domain").split()[0] == f"~{zone}"
    assert "link: hc0" in resolved.query(f"x.{zone}")


def test_a_bridge_made_again_is_registered_again(resolved: Host) -> None:
    zone = resolved.network()["zone"]
    resolved.host.run("ip", "link", "del", "hc0")
    # The next creation makes the bridge again (a new link: resolved knows nothing of it).
    resolved.host.hc("run", "busybox", "--name", "y", "-d", "--", "sleep", "1000")
    assert resolved.link("domain").split()[0] == f"~{zone}"
    answer = resolved.query(f"y.{zone}")
    assert "link: hc0" in answer
    assert "link: hc0" in resolved.query(f"x.{zone}")  # plugged back in


def test_doctor_sees_a_link_resolved_forgot(resolved: Host) -> None:
    zone = resolved.network()["zone"]
    ifindex = resolved.host.run("cat", "/sys/class/net/hc0/ifindex").stdout.strip()
    resolved.host.run("busctl", "call", "org.freedesktop.resolve1", "/org/freedesktop/resolve1",
                      "org.freedesktop.resolve1.Manager", "RevertLink", "i", ifindex)
    check = doctor_check(resolved)
    assert check["status"] == "fail"
    assert check["detail"].startswith("systemd-resolved's link hc0 lacks DNS server "), check
    assert check["detail"].endswith(f": the host does not resolve *.{zone}"), check
    assert "`systemctl restart hcd` registers it" in check["fix"]
    resolved.restart_agent()
    assert doctor_check(resolved)["status"] == "ok"
