"""Dev hosts against the real thing: systemd-nspawn booting a real systemd, loop devices, reboots.

Uses the session's two dev hosts where a test only looks, and throwaway ones (hct-<pid>-...)
where it stops or breaks them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cli_checks import assert_nothing_left, ensure_busybox

from homecloud import devhost as devhosts
from homecloud.devhost import cgroups, network, procs
from homecloud.devhost.netplan import DEVHOST_NETWORK, NetworkPlan
from homecloud.devhost.spec import STATE_ROOT, DevHostPaths
from homecloud.errors import HostError
from homecloud.host.inotify_limits import LIMITS, SYSCTL_DROPIN
from homecloud.images.mirror import find_debian_mirror

pytestmark = pytest.mark.system
READY = ("running", "degraded")


def machine_processes(name: str) -> list[int]:
    """Processes on this machine that belong to the dev host ``name`` (supervisor, nspawn)."""
    found = []
    for entry in Path("/proc").iterdir():
        argv = procs.cmdline(int(entry.name)) if entry.name.isdigit() else None
        if argv and (f"--machine={name}" in argv or ("_supervise" in argv and name in argv)):
            found.append(int(entry.name))
    return found


def loop_devices() -> set[tuple[int, int]]:
    """(device, inode) of every loop device's backing file."""
    result = subprocess.run(["losetup", "--list", "--json", "-O", "NAME,BACK-INO,BACK-MAJ:MIN"],
                            capture_output=True, text=True, check=True)
    return {(d.backing_device, d.backing_inode) for d in procs.parse_losetup_json(result.stdout)}


def hc_devhost(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The `hc-devhost` command line, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "homecloud.devhost", *args],
                            capture_output=True, text=True, timeout=300, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"hc-devhost {' '.join(args)} exited with {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def links_inside(host: devhosts.DevHost) -> list[str]:
    lines = host.run("ip", "-o", "link", "show").stdout.splitlines()
    return sorted(line.split(": ")[1].split("@")[0] for line in lines)


# Connect to a closed port: "connection refused" proves the address answers, without a server.
REACHABLE = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.settimeout(5)
print(s.connect_ex((sys.argv[1], 9)))
"""


def reachable(source: devhosts.DevHost, address: str) -> bool:
    code = int(source.run("python3", "-c", REACHABLE, address).stdout)
    return code in (0, errno.ECONNREFUSED)


def has_host_link(name: str) -> bool:
    """Whether the machine still has the dev host's end of its link (nspawn names it, or gives
    it as altname, vb-NAME); it lives as long as anything of the guest does."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    return re.search(rf"\bvb-{re.escape(name)}(?![\w.-])", links) is not None


def assert_gone(name: str) -> None:
    paths = DevHostPaths.of(name)
    assert machine_processes(name) == []
    assert not has_host_link(name)
    assert not paths.root.exists()
    assert not Path(f"/run/systemd/nspawn/propagate/{name}").exists()
    assert procs.mounts_under(paths.root) == []
    assert not any((hierarchy / cgroups.devhost_cgroup(name).relative_to("/")).exists()
                   for hierarchy in cgroups.writable_hierarchies())


@pytest.fixture
def throwaway_name(_devhost_support: None) -> Iterator[str]:
    """A name for a dev host the test makes itself; removed afterwards whatever happened."""
    name = f"hct-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        if DevHostPaths.of(name).root.exists():
            devhosts.shutdown(name)


def test_two_dev_hosts_boot_side_by_side(devhost: devhosts.DevHost,
                                         second_devhost: devhosts.DevHost) -> None:
    assert devhost.pid != second_devhost.pid
    for host in (devhost, second_devhost):
        assert host.system_state() in READY
        assert host.run("hostname").stdout.strip() == host.name
    ids = {host.run("cat", "/etc/machine-id").stdout for host in (devhost, second_devhost)}
    assert len(ids) == 2, "each dev host needs its own machine id"
    listed = {s["name"]: s for s in json.loads(hc_devhost("ls", "--json").stdout)}
    assert listed[devhost.name]["pid"] == devhost.pid
    assert listed[second_devhost.name]["state"] == "running"


def test_each_dev_host_has_its_own_state_dir(devhost: devhosts.DevHost,
                                             second_devhost: devhosts.DevHost) -> None:
    marker = f"/var/lib/homecloud/marker-{uuid.uuid4().hex}"
    devhost.run("sh", "-c", f"echo one > {marker}")
    try:
        assert devhost.run("cat", marker).stdout == "one\n"
        assert second_devhost.run("test", "-e", marker, check=False).returncode == 1
        assert (devhost.paths.state / Path(marker).name).read_text() == "one\n"
    finally:
        devhost.run("rm", "-f", marker)


def systemd_cgroups(pid: int) -> dict[str, str]:
    """The cgroup of ``pid`` in the hierarchies a dev host's systemd writes (named systemd and
    unified), as the machine sees them."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return {hierarchy: path for _, hierarchy, path in (line.split(":", 2) for line in lines)
            if hierarchy in ("name=systemd", "")}


def test_same_named_units_in_two_dev_hosts_are_separate(devhost: devhosts.DevHost,
                                                       second_devhost: devhosts.DevHost) -> None:
    """Each dev host's systemd has a cgroup tree of its own: an instance running in one does
    not keep the stopped instance of the same name in the other from unloading its unit (they
    once shared /payload/hc.slice/hc-NAME.service, and `hc start` failed with "unit ... already
    exists")."""
    hosts = (devhost, second_devhost)
    roots = [systemd_cgroups(host.pid) for host in hosts]
    for host, root in zip(hosts, roots, strict=True):
        init_scope = cgroups.devhost_cgroup(host.name) / "payload" / "init.scope"
        assert set(root.values()) == {str(init_scope)}, root
    name = f"cg-{uuid.uuid4().hex[:8]}"
    unit = f"hc-{name}.service"
    try:
        for host in hosts:
            host.hc("run", ensure_busybox(host), "--name", name, "-d", "--", "sleep", "1000")
        second_devhost.hc("stop", name)
        load = second_devhost.run("systemctl", "show", "-p", "LoadState", "--value", unit)
        assert load.stdout.strip() == "not-found"
        second_devhost.hc("start", name)
        for host in hosts:
            assert host.run("systemctl", "is-active", unit).stdout.strip() == "active"
            assert {i["name"]: i["state"] for i in host.hc("ls", json=True)}[name] == "running"
    finally:
        for host in hosts:
            host.hc("rm", "-f", name, check=False)
            assert_nothing_left(host, name)


def test_homecloud_is_installed_inside(devhost: devhosts.DevHost) -> None:
    assert devhost.run("systemctl", "is-active", "hcd.socket").stdout.strip() == "active"
    socket = devhost.run("stat", "-c", "%U:%G %a", "/run/homecloud/hc.sock").stdout.split()
    assert socket == ["root:homecloud", "660"]
    unit = devhost.run("systemctl", "cat", "hcd.service").stdout
    assert f"ExecStart={devhost.spec.venv_bin}/hcd" in unit
    # `hc` is on PATH for commands run through the API and for login shells inside.
    hc_path = f"{devhost.spec.venv_bin}/hc"
    assert devhost.run("sh", "-c", "command -v hc").stdout.strip() == hc_path
    assert devhost.run("env", "-i", "bash", "-lc", "command -v hc").stdout.strip() == hc_path
    # hostsetup is idempotent: again changes nothing and still succeeds.
    again = devhost.run(devhost.python, "-m", "homecloud.host.setup")
    assert "installed" not in again.stdout and "created group" not in again.stdout


def test_hostsetup_keeps_the_inotify_limits_at_boot(devhost: devhosts.DevHost) -> None:
    """The sysctl.d drop-in hostsetup installed, as systemd-sysctl reads it at boot: the
    minimum, or the higher value the host already has. In a dev host /proc/sys is read-only:
    the limits are the machine's (raised by hc-devhost), and hostsetup says so calmly."""
    dropin = devhost.run("/usr/lib/systemd/systemd-sysctl", "--cat-config").stdout
    assert f"# {SYSCTL_DROPIN}\n" in dropin
    for limit in LIMITS:
        value = int(devhost.run("cat", f"/proc/sys/{limit.key.replace('.', '/')}").stdout)
        assert value >= limit.minimum
        assert f"\n{limit.key} = {value}\n" in dropin
    # A minimum above what the machine has: the drop-in asks for it, /proc/sys refuses.
    script = ("import sys; from pathlib import Path; "
              "from homecloud.host.setup import Layout, raise_inotify_limits; "
              "from homecloud.host.inotify_limits import Limit; "
              "layout = Layout(units_src=Path('/'), bindir=Path('/'), "
              "sysctl_dropin=Path(sys.argv[1])); "
              "print(*raise_inotify_limits(layout, (Limit('fs.inotify.max_user_instances', "
              "10**9),)), sep='\\n')")
    scratch = devhost.run("mktemp", "-d").stdout.strip()
    try:
        lines = devhost.run(devhost.python, "-c", script, f"{scratch}/60.conf").stdout
        value = devhost.run("cat", "/proc/sys/fs/inotify/max_user_instances").stdout.strip()
        assert lines.splitlines() == [
            f"installed {scratch}/60.conf (fs.inotify.max_user_instances=1000000000)",
            f"fs.inotify.max_user_instances is {value} here: /proc/sys is read-only (a "
            "container), so the machine's own limits apply"]
        assert "\nfs.inotify.max_user_instances = 1000000000\n" in \
            devhost.run("cat", f"{scratch}/60.conf").stdout
    finally:
        devhost.run("rm", "-r", scratch)


def test_commands_inside_get_input_exit_code_and_user(devhost: devhosts.DevHost) -> None:
    result = devhost.run("sh", "-c", "cat; exit 3", input="hello", check=False)
    assert (result.returncode, result.stdout) == (3, "hello")
    assert devhost.run("id", "-un", user="nobody").stdout.strip() == "nobody"
    with pytest.raises(devhosts.DevHostCommandError, match="exited with 3"):
        devhost.run("sh", "-c", "echo oops >&2; exit 3")
    # The CLI passes the exit code through too.
    assert hc_devhost("exec", devhost.name, "--", "sh", "-c", "exit 7", check=False).returncode == 7


def test_failed_units_inside_are_named(devhost: devhosts.DevHost) -> None:
    """What `hc-devhost up` prints after "degraded"."""
    unit = f"hct-fails-{os.getpid()}.service"
    devhost.run("systemd-run", f"--unit={unit}", "--wait", "false", check=False)
    try:
        assert unit in devhost.failed_units()
    finally:
        devhost.run("systemctl", "reset-failed", unit, check=False)
    assert unit not in devhost.failed_units()


def test_loop_mounts_work_inside(devhost: devhosts.DevHost) -> None:
    image = f"/var/lib/homecloud/loop-{uuid.uuid4().hex[:8]}.img"
    mountpoint = f"/run/{Path(image).stem}"
    devhost.run("truncate", "-s", "256M", image)
    try:
        assert devhost.run("test", "-b", "/dev/loop31", check=False).returncode == 0
        devhost.run("mkfs.btrfs", "-q", image)
        devhost.run("mkdir", "-p", mountpoint)
        devhost.run("mount", "-o", "loop", image, mountpoint)
        try:
            fstype = devhost.run("findmnt", "-n", "-o", "FSTYPE", mountpoint).stdout.strip()
            assert fstype == "btrfs"
            devhost.run("btrfs", "subvolume", "create", f"{mountpoint}/sub")
        finally:
            devhost.run("umount", mountpoint)
    finally:
        devhost.run("rm", "-f", image)


def test_reboot_comes_back_with_state_kept(second_devhost: devhosts.DevHost) -> None:
    marker = f"/var/lib/homecloud/reboot-{uuid.uuid4().hex}"
    second_devhost.run("sh", "-c", f"echo kept > {marker}")
    second_devhost.run("touch", "/run/gone-after-reboot")
    before = second_devhost.pid
    try:
        devhosts.reboot(second_devhost.name)
        assert second_devhost.pid != before
        assert second_devhost.system_state() in READY
        assert second_devhost.run("cat", marker).stdout == "kept\n"
        assert second_devhost.run("test", "-e", "/run/gone-after-reboot",
                                  check=False).returncode == 1
        active = second_devhost.run("systemctl", "is-active", "hcd.socket").stdout.strip()
        assert active == "active"
        # A reboot is a fresh network namespace: the supervisor configured host0 again.
        host0 = second_devhost.run("ip", "-br", "address", "show", "host0").stdout
        assert f"{second_devhost.address}/16" in host0 and "UP" in host0
        assert reachable(second_devhost, "198.18.0.1")
    finally:
        second_devhost.run("rm", "-f", marker)


def test_cli_up_down_keep_and_remove(throwaway_name: str) -> None:
    name = throwaway_name
    status = json.loads(hc_devhost("up", name, "--json").stdout)
    assert status["name"] == name and status["system_state"] in READY
    link = status["host_link"]
    assert link in network.bridge_ports(DEVHOST_NETWORK)
    paths = DevHostPaths.of(name)
    # Leave a mounted loop device inside: `down` must not leave it attached on the machine.
    host = devhosts.get(name)
    host.run("sh", "-c", "truncate -s 256M /var/lib/homecloud/pool.img && "
             "mkfs.btrfs -q /var/lib/homecloud/pool.img && mkdir -p /var/lib/homecloud/pool && "
             "mount -o loop /var/lib/homecloud/pool.img /var/lib/homecloud/pool && "
             "echo kept > /var/lib/homecloud/marker")
    pool_file = os.stat(paths.state / "pool.img")
    assert (pool_file.st_dev, pool_file.st_ino) in loop_devices()

    hc_devhost("down", name, "--keep")
    assert machine_processes(name) == []
    assert not network.link_exists(link)
    assert (pool_file.st_dev, pool_file.st_ino) not in loop_devices()
    assert (paths.state / "marker").read_text() == "kept\n"
    stopped = json.loads(hc_devhost("status", name, "--json").stdout)
    assert stopped["state"] == "stopped" and stopped["pid"] is None

    hc_devhost("up", name)
    again = json.loads(hc_devhost("status", name, "--json").stdout)
    assert (again["address"], again["address6"]) == (status["address"], status["address6"])
    assert host.run("cat", "/var/lib/homecloud/marker").stdout == "kept\n"
    assert host.run("systemctl", "is-active", "hcd.socket").stdout.strip() == "active"

    link = again["host_link"]
    hc_devhost("down", name)
    assert_gone(name)
    assert not network.link_exists(link)
    assert (pool_file.st_dev, pool_file.st_ino) not in loop_devices()
    missing = hc_devhost("down", name, check=False)
    assert missing.returncode == 1
    assert f"no dev host named {name!r}" in missing.stderr


def test_a_boot_that_fails_leaves_nothing(throwaway_name: str) -> None:
    with pytest.raises(HostError, match="did not finish booting in time"):
        devhosts.boot(throwaway_name, timeout=0.001)
    assert_gone(throwaway_name)


def test_hc_devhost_refuses_bad_names_and_unknown_hosts(_devhost_support: None) -> None:
    bad = hc_devhost("up", "no_underscores", check=False)
    assert bad.returncode == 1 and "dev host name 'no_underscores' is invalid" in bad.stderr
    unknown = hc_devhost("exec", "hct-nosuch", "--", "true", check=False)
    assert unknown.returncode == 1 and "no dev host named 'hct-nosuch'" in unknown.stderr
    # Only these two: other people's dev hosts come and go under the same root meanwhile.
    for name in ("no_underscores", "hct-nosuch"):
        assert not (STATE_ROOT / name).exists()
        assert not has_host_link(name)


def test_each_dev_host_has_its_own_network(devhost: devhosts.DevHost,
                                          second_devhost: devhosts.DevHost) -> None:
    hosts = (devhost, second_devhost)
    assert len({host.address for host in hosts}) == 2
    assert len({host.address6 for host in hosts}) == 2
    listed = {s["name"]: s for s in json.loads(hc_devhost("ls", "--json").stdout)}
    ports = network.bridge_ports(DEVHOST_NETWORK)
    # Three namespaces: the machine's and one each.
    assert len({os.stat(f"/proc/{pid}/ns/net").st_ino
                for pid in (os.getpid(), devhost.pid, second_devhost.pid)}) == 3
    routes = json.loads(subprocess.run(["ip", "-json", "route", "show", "default"],
                                       capture_output=True, text=True, check=True).stdout)
    machine_only = {DEVHOST_NETWORK.bridge, *(route["dev"] for route in routes)}
    for host in hosts:
        # Its own link and loopback (and whatever its agent adds, such as hc0), nothing of the
        # machine's: not the uplink, not the bridge, not the other dev hosts' ends.
        inside = links_inside(host)
        assert {"host0", "lo"} <= set(inside)
        assert not machine_only & set(inside)
        assert not [link for link in inside if link.startswith("vb-")]
        host0 = host.run("ip", "-br", "address", "show", "host0").stdout
        assert f"{host.address}/16" in host0 and f"{host.address6}/64" in host0
        assert "default via 198.18.0.1 dev host0" in host.run("ip", "route").stdout
        status = listed[host.name]
        assert (status["address"], status["address6"]) == (host.address, host.address6)
        assert status["host_link"] in ports


SERVER = """
import socket, sys
server = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
server.settimeout(20)
print(server.getsockname()[1], flush=True)
for _ in range(2):
    conn, peer = server.accept()
    conn.sendall(f"{sys.argv[1]} saw {peer[0]}".encode())
    conn.close()
"""
CLIENT = """
import socket, sys
for address in sys.argv[2:]:
    with socket.create_connection((address, int(sys.argv[1])), timeout=5) as conn:
        print(conn.recv(200).decode())
"""


def test_dev_hosts_reach_each_other_over_tcp(devhost: devhosts.DevHost,
                                             second_devhost: devhosts.DevHost) -> None:
    argv = second_devhost.command(["timeout", "30", "python3", "-c", SERVER,
                                   second_devhost.name])
    with subprocess.Popen(argv, env=second_devhost.environment(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          text=True) as server:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        assert port.isdigit(), server.communicate(timeout=40)
        client = devhost.run("python3", "-c", CLIENT, port, str(second_devhost.address),
                             str(second_devhost.address6), timeout=60)
        _out, err = server.communicate(timeout=40)
        assert server.returncode == 0, err
    # The server saw the client's own addresses: no NAT between dev hosts.
    assert client.stdout.splitlines() == [f"{second_devhost.name} saw ::ffff:{devhost.address}",
                                          f"{second_devhost.name} saw {devhost.address6}"]


HEAD = """
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"),
                                 timeout=10).status)
except urllib.error.HTTPError as exc:  # an HTTP answer all the same
    print(exc.code)
"""


def test_dev_host_resolves_and_reaches_the_debian_mirror(devhost: devhosts.DevHost) -> None:
    try:
        mirror = find_debian_mirror()
    except HostError as exc:
        pytest.skip(exc.message)
    name = urlsplit(mirror).hostname
    assert name is not None
    try:
        socket.getaddrinfo(name, 80)
        urllib.request.urlopen(urllib.request.Request(mirror, method="HEAD"), timeout=10)
    except urllib.error.HTTPError:
        pass
    except OSError as exc:
        pytest.skip(f"this machine itself cannot reach the mirror {mirror}: {exc}")
    # DNS through the machine's resolver, HTTP through the machine's masquerading.
    assert devhost.run("getent", "hosts", name).stdout.strip()
    status = int(devhost.run("python3", "-c", HEAD, mirror, timeout=60).stdout)
    assert 200 <= status < 500


def test_machine_network_is_idempotent_and_removable() -> None:
    """The bridge and table of a scratch plan (not the dev hosts' own): made twice, then
    removed, touching no other nftables table."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    plan = NetworkPlan(bridge=f"hct{os.getpid()}", table=f"hct-{os.getpid()}",
                       ipv4=IPv4Network("198.19.255.0/24"),
                       ipv6=IPv6Network("fd68:6364:6576:ffff::/64"))
    dummy = f"hctd{os.getpid()}"  # one end of a veth pair (the kernel has no dummy links)

    def tables() -> set[str]:
        listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                                check=True).stdout
        return set(listed.splitlines()) - {f"table ip {plan.table}"}

    before = tables()
    try:
        for _ in range(2):
            network.ensure_machine_network(plan)
        addresses = subprocess.run(["ip", "-br", "address", "show", plan.bridge],
                                   capture_output=True, text=True, check=True).stdout
        assert "198.19.255.1/24" in addresses and "fd68:6364:6576:ffff::1/64" in addresses
        rules = subprocess.run(["nft", "list", "table", "ip", plan.table], capture_output=True,
                               text=True, check=True).stdout
        assert rules.count("masquerade") == 1
        assert tables() == before
        # Something attached: the bridge stays.
        subprocess.run(["ip", "link", "add", dummy, "master", plan.bridge, "type", "veth",
                        "peer", "name", f"{dummy}p"], check=True)
        assert not network.remove_machine_network(plan)
        assert network.link_exists(plan.bridge) and network.table_exists(plan)
        subprocess.run(["ip", "link", "delete", dummy], check=True)
        assert network.remove_machine_network(plan)
        assert not network.link_exists(plan.bridge) and not network.table_exists(plan)
        assert network.remove_machine_network(plan)  # nothing left to remove: fine
        assert tables() == before
    finally:
        for link in (dummy, plan.bridge):
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
        subprocess.run(["nft", "delete", "table", "ip", plan.table], capture_output=True,
                       check=False)
