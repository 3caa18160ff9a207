"""Bare-metal machines, the server side, in a dev host of this module's own: `hc provision
enable` runs hc-dhcp (dnsmasq) and hc-provision under systemd on the bridge hc0; a real DHCP
client (busybox udhcpc in a network namespace on a veth into the bridge) gets its homecloud
address or nothing; a real qemu (TCG, `-boot n`, its own iPXE ROM, no disk) on a tap on hc0
fetches its boot script and then the installer's kernel. The install itself is
test_machine_install.py's.

The machine image here is a tiny imported tree with files at /boot/vmlinuz-*, /boot/initrd.img-*
and /sbin/init: what `hc machine add` checks; nothing boots it. The installer files are
stand-ins of the same kind (the boot path only downloads them), unless a real build is there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Interface
from typing import Any

import pytest

from homecloud.devhost import DevHost
from tests.system.baremetal import import_stand_in_image
from tests.system.cli_checks import hc_fails, wait_for

IMAGE = "tiny-machine"
MAC1, MAC2, MAC3 = "52:54:00:4d:00:01", "52:54:00:4d:00:02", "52:54:00:4d:00:03"
UNKNOWN_MAC = "52:54:00:4d:00:99"
DHCP_CONFIG = "/run/homecloud/dhcp/dnsmasq.conf"
INSTALLER = "/var/lib/homecloud/installer"
QEMU_TIMEOUT = 120  # seconds for qemu's iPXE to reach the installer kernel under TCG
LAN = "hctlan0"  # a test bridge standing for a LAN with a DHCP server of its own


@pytest.fixture(scope="module")
def host(private_devhost: DevHost) -> DevHost:
    """The module's dev host with a machine image and stand-in installer files."""
    for tool in ("busybox", "dnsmasq", "qemu-system-x86_64", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"the bare-metal tests need {tool}")
    host = private_devhost
    import_stand_in_image(host, IMAGE)
    host.hc("image", "build", "busybox", "-q")  # a tree with no kernel: not installable
    builds = host.run("sh", "-c", f"ls {INSTALLER} 2>/dev/null || true").stdout.split()
    if not builds:
        host.run("sh", "-c", f"mkdir -p {INSTALLER}/stand-in && "
                 f"head -c 2000000 /dev/urandom > {INSTALLER}/stand-in/vmlinuz && "
                 f"head -c 1000 /dev/zero > {INSTALLER}/stand-in/initrd.img")
    return host


def bridge_address(host: DevHost, interface: str = "hc0") -> IPv4Interface:
    data = json.loads(host.run("ip", "-j", "-4", "addr", "show", interface).stdout)
    info = data[0]["addr_info"][0]
    return IPv4Interface(f"{info['local']}/{info['prefixlen']}")


def dhcp_range(address: IPv4Interface) -> str:
    net = address.network
    return f"{net[-56]}-{net[-6]}"


@pytest.fixture(scope="module")
def gateway(host: DevHost) -> IPv4Interface:
    """Full DHCP on hc0 (the range at the top of its subnet) and machine node1 added."""
    address = bridge_address(host)
    host.hc("provision", "enable", "--interface", "hc0", "--dhcp-range", dhcp_range(address))
    host.hc("machine", "add", "node1", "--mac", MAC1, "--image", IMAGE)
    return address


def provision_status(host: DevHost) -> dict[str, Any]:
    status: dict[str, Any] = host.hc("provision", "status", json=True)
    return status


def machines(host: DevHost) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in host.hc("machine", "ls", json=True)}


def snapshot(host: DevHost) -> tuple[Any, ...]:
    """What a refused command must leave as it was."""
    return (machines(host), sorted(i["name"] for i in host.hc("ls", json=True)),
            host.run("cat", DHCP_CONFIG).stdout,
            sorted(i["name"] for i in host.hc("network", "ls", json=True)["instances"]))


# -- enabling ------------------------------------------------------------------------------------

def test_enable_runs_dhcp_and_the_provisioning_server(host: DevHost,
                                                      gateway: IPv4Interface) -> None:
    status = provision_status(host)
    assert status["enabled"] and status["settings"]["mode"] == "dhcp"
    assert status["units"] == {"hc-provision.service": "active", "hc-dhcp.service": "active"}
    assert status["url"] == f"http://{gateway.ip}:8067"
    config = host.run("cat", DHCP_CONFIG).stdout
    assert f"dhcp-host={MAC1},{machines(host)['node1']['address4']},node1" in config
    # The bridge's firewall lets machines reach DHCP, TFTP and HTTP on the host.
    chain = host.run("nft", "list", "chain", "inet", "homecloud", "instance_to_host").stdout
    assert all(rule in chain for rule in ("udp dport 67 accept", "udp dport 69 accept",
                                          "tcp dport 8067 accept"))
    text = host.hc("provision", "status").stdout
    assert "hc-dhcp.service: active" in text and "(dhcp, range" in text


def test_an_unknown_interface_or_a_range_outside_it_is_refused(host: DevHost,
                                                                gateway: IPv4Interface) -> None:
    before = provision_status(host)["settings"]
    hc_fails(host, "provision", "enable", "--interface", "nosuch0",
             message="there is no interface 'nosuch0'")
    hc_fails(host, "provision", "enable", "--interface", "hc0", "--dhcp-range",
             "192.0.2.10-192.0.2.20", message="is not inside the interface's subnet")
    hc_fails(host, "provision", "enable", "--dhcp-range", "10.0.0.9-10.0.0.1",
             message="the last address is before the first")
    assert provision_status(host)["settings"] == before


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (("node9", "--mac", "52:54:00:4d:00", "--image", IMAGE), "is invalid: use six hex pairs"),
    (("node9", "--mac", "01:00:5e:00:00:01", "--image", IMAGE), "is a multicast address"),
    (("Bad_Name", "--mac", MAC3, "--image", IMAGE), "Bad_Name"),
    (("node9", "--mac", MAC3, "--image", "nosuch"), "nosuch"),
    (("node9", "--mac", MAC3, "--image", "busybox"), "has no kernel"),
    (("node9", "--mac", MAC3, "--image", IMAGE, "--workflow", "nosuch"), "nosuch"),
    (("node9", "--mac", MAC3, "--image", IMAGE, "--disk", "sda"), "--disk 'sda' is invalid"),
    (("node9", "--mac", MAC3, "--image", IMAGE, "--diskless", "--disk", "/dev/sda"),
     "exclude each other"),
    (("node1", "--mac", MAC3, "--image", IMAGE), "'node1' already exists"),
    (("node9", "--mac", MAC1.upper(), "--image", IMAGE), "is already machine 'node1'"),
])
def test_bad_machine_input_is_refused_and_leaves_nothing(
        host: DevHost, gateway: IPv4Interface, args: tuple[str, ...], message: str) -> None:
    before = snapshot(host)
    hc_fails(host, "machine", "add", *args, message=message)
    assert snapshot(host) == before


def test_a_machine_row_without_its_instance_is_removed_when_the_agent_starts(
        host: DevHost, gateway: IPv4Interface) -> None:
    """What a crash between the two writes of `hc machine add` leaves."""
    host.run(host.python, "-c", (
        "from homecloud.config import load_config\n"
        "from homecloud.machines.records import MachineRecords\n"
        "from homecloud.machines.spec import MachineSpec\n"
        "from homecloud.state.store import Store\n"
        "records = MachineRecords(Store(load_config().database_path))\n"
        f"records.insert(MachineSpec('orphan', '{MAC3}', '{IMAGE}').validated())\n"))
    assert "orphan" in machines(host)
    host.run("systemctl", "restart", "hcd.service")
    assert "orphan" not in machines(host)
    host.hc("machine", "add", "node3", "--mac", MAC3, "--image", IMAGE)  # the MAC is free
    host.hc("machine", "rm", "node3")


# -- DHCP ----------------------------------------------------------------------------------------

@pytest.fixture
def client(host: DevHost) -> Iterator[str]:
    """A network namespace in the dev host with eth0 on a veth into hc0: a machine's NIC."""
    host.run("ip", "netns", "add", "hctclient")
    try:
        host.run("ip", "link", "add", "hctveth0", "type", "veth", "peer", "name", "eth0",
                 "netns", "hctclient")
        host.run("ip", "link", "set", "hctveth0", "master", "hc0", "up")
        yield "hctclient"
    finally:
        host.run("ip", "link", "delete", "hctveth0", check=False)
        host.run("ip", "netns", "delete", "hctclient", check=False)


def udhcpc(host: DevHost, ns: str, mac: str, *options: str) -> str:
    """busybox udhcpc asking for a lease (or a PXE boot offer) as ``mac``; its log."""
    host.run("ip", "-n", ns, "link", "set", "eth0", "down")
    host.run("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
    result = host.run("ip", "netns", "exec", ns, "busybox", "udhcpc", "-n", "-q", "-t", "3",
                      "-T", "2", "-i", "eth0", "-s", "/bin/true", *options, check=False,
                      timeout=30)
    return result.stdout + result.stderr


def test_full_dhcp_gives_a_known_mac_its_address_and_an_unknown_one_nothing(
        host: DevHost, gateway: IPv4Interface, client: str) -> None:
    address = machines(host)["node1"]["address4"]
    log = udhcpc(host, client, MAC1)
    assert f"lease of {address} obtained from {gateway.ip}" in log, log
    log = udhcpc(host, client, UNKNOWN_MAC)
    assert "no lease" in log and "obtained" not in log, log
    ignored = wait_for("the ignored MAC in hc provision status", lambda: [
        m for m in provision_status(host)["ignored_macs"] if m["mac"] == UNKNOWN_MAC])
    assert ignored[0]["count"] >= 1
    assert UNKNOWN_MAC in host.hc("provision", "status").stdout


# -- the boot path -------------------------------------------------------------------------------

def boot_script(host: DevHost, gateway: IPv4Interface, mac: str) -> str:
    return host.run("curl", "-sf", f"http://{gateway.ip}:8067/boot.ipxe?mac={mac}").stdout


def token_of(script: str) -> str:
    return script.split("hc.token=")[1].split()[0]


def machine_get(host: DevHost, gateway: IPv4Interface, name: str, what: str,
                token: str) -> int:
    result = host.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                      f"Authorization: Bearer {token}",
                      f"http://{gateway.ip}:8067/m/{name}/{what}")
    return int(result.stdout)


def test_a_token_opens_its_own_machine_only(host: DevHost, gateway: IPv4Interface) -> None:
    host.hc("machine", "add", "node2", "--mac", MAC2, "--image", IMAGE)
    try:
        token1 = token_of(boot_script(host, gateway, MAC1))
        token2 = token_of(boot_script(host, gateway, MAC2))
        assert machine_get(host, gateway, "node2", "workflow", token1) == 403
        assert machine_get(host, gateway, "node1", "image", token2) == 403
        assert machine_get(host, gateway, "node2", "workflow", "nonsense") == 403
        assert machine_get(host, gateway, "node2", "workflow", token2) == 200
        assert machines(host)["node2"]["state"] == "installing"
    finally:
        host.hc("machine", "rm", "node2")
        host.hc("machine", "reinstall", "node1")
    script = boot_script(host, gateway, UNKNOWN_MAC)
    assert f"unknown machine {UNKNOWN_MAC}" in script and "kernel" not in script
    assert UNKNOWN_MAC in {m["mac"] for m in provision_status(host)["unknown_macs"]}


@pytest.fixture
def tap(host: DevHost) -> Iterator[str]:
    host.run("ip", "tuntap", "add", "hcttap0", "mode", "tap")
    try:
        host.run("ip", "link", "set", "hcttap0", "master", "hc0", "up")
        yield "hcttap0"
    finally:
        host.run("ip", "link", "delete", "hcttap0", check=False)


def test_a_machine_network_boots_into_the_installer(host: DevHost, gateway: IPv4Interface,
                                                    tap: str) -> None:
    """qemu's own iPXE gets node1's address and the boot script URL over DHCP, expands its MAC
    into it, runs the script and downloads the installer kernel: the VM stops there."""
    serial = "/tmp/node1-serial.log"
    since = host.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    qemu = subprocess.Popen(host.command([
        # -nographic: the firmware and iPXE print to the serial port.
        "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-nodefaults",
        "-display", "none", "-monitor", "none", "-serial", f"file:{serial}", "-boot", "n",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={MAC1}"]),
        env=host.environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def kernel_fetched() -> bool:
            log = host.run("journalctl", "-u", "hc-provision", "-o", "cat", "--since",
                           since).stdout
            return "GET /installer/vmlinuz" in log and f"node1 ({MAC1})" in log
        wait_for("qemu's iPXE to fetch the installer kernel", kernel_fetched, QEMU_TIMEOUT)
    finally:
        qemu.terminate()
        qemu.wait(timeout=30)
    console = host.run("cat", serial).stdout
    assert f"boot.ipxe?mac={MAC1}" in console, console[-2000:]
    assert "homecloud: installing node1" in console
    node1 = machines(host)["node1"]
    assert node1["boots"] >= 1 and node1["last_boot"] is not None


# -- proxyDHCP and another DHCP server -----------------------------------------------------------

@pytest.fixture
def lan(host: DevHost) -> Iterator[IPv4Interface]:
    """A test bridge with the host on 192.0.2.1/24 and, in a namespace on a veth into it, a plain
    dnsmasq giving addresses: a LAN's own DHCP server."""
    host.run("ip", "link", "add", LAN, "type", "bridge")
    host.run("ip", "netns", "add", "hctlan")
    try:
        host.run("ip", "addr", "add", "192.0.2.1/24", "dev", LAN)
        host.run("ip", "link", "set", LAN, "up")
        host.run("ip", "link", "add", "hctlanv0", "type", "veth", "peer", "name", "eth0",
                 "netns", "hctlan")
        host.run("ip", "link", "set", "hctlanv0", "master", LAN, "up")
        host.run("ip", "-n", "hctlan", "addr", "add", "192.0.2.2/24", "dev", "eth0")
        host.run("ip", "-n", "hctlan", "link", "set", "eth0", "up")
        host.run("systemd-run", "--unit", "hct-lan-dhcp", "--", "ip", "netns", "exec", "hctlan",
                 "dnsmasq", "--keep-in-foreground", "--port=0", "--interface=eth0",
                 "--dhcp-range=192.0.2.100,192.0.2.150,1h", "--leasefile-ro",
                 "--conf-file=/dev/null")
        yield IPv4Interface("192.0.2.1/24")
    finally:
        host.run("systemctl", "stop", "hct-lan-dhcp", check=False)
        host.run("ip", "netns", "delete", "hctlan", check=False)
        host.run("ip", "link", "delete", LAN, check=False)


def test_full_dhcp_is_refused_where_another_server_answers(
        host: DevHost, gateway: IPv4Interface, lan: IPv4Interface) -> None:
    before = provision_status(host)
    config = host.run("cat", DHCP_CONFIG).stdout
    error = hc_fails(host, "provision", "enable", "--interface", LAN, "--dhcp-range",
                     "192.0.2.200-192.0.2.250", message="another DHCP server (192.0.2.2)")
    assert "use proxyDHCP" in error
    after = provision_status(host)
    assert after["settings"] == before["settings"] and after["units"] == before["units"]
    assert host.run("cat", DHCP_CONFIG).stdout == config


def test_proxy_dhcp_offers_boot_to_known_machines_only(
        host: DevHost, gateway: IPv4Interface, lan: IPv4Interface) -> None:
    """Beside the LAN's server, homecloud's answer is the boot offer alone (no address) and only
    for a machine it knows; the LAN's server gives the addresses."""
    host.hc("provision", "enable", "--interface", LAN)
    host.run("ip", "netns", "add", "hctpxe")
    try:
        host.run("ip", "link", "add", "hctpxev0", "type", "veth", "peer", "name", "eth0",
                 "netns", "hctpxe")
        host.run("ip", "link", "set", "hctpxev0", "master", LAN, "up")
        time.sleep(0.5)  # the bridge port forwards once it has learned
        pxe = ("-V", "PXEClient", "-x", "0x5d:0000")  # a PXE client of a BIOS machine
        # udhcpc takes the first offer, the proxy's, and shows it carries no address (a PXE
        # client takes the address from the LAN's offer and the boot from the proxy's).
        log = udhcpc(host, "hctpxe", MAC1, *pxe)
        assert "select for 0.0.0.0, server 192.0.2.1" in log, log
        log = udhcpc(host, "hctpxe", UNKNOWN_MAC, *pxe)
        assert "server 192.0.2.1" not in log and "obtained from 192.0.2.2" in log, log
        ignored = wait_for("the proxy-ignored MAC", lambda: [
            m for m in provision_status(host)["ignored_macs"] if m["mac"] == UNKNOWN_MAC])
        assert ignored
    finally:
        host.run("ip", "link", "delete", "hctpxev0", check=False)
        host.run("ip", "netns", "delete", "hctpxe", check=False)
        host.hc("provision", "enable", "--interface", "hc0", "--dhcp-range",
                dhcp_range(gateway))


# -- removal -------------------------------------------------------------------------------------

def test_rm_leaves_nothing_of_the_machine(host: DevHost, gateway: IPv4Interface) -> None:
    host.hc("machine", "add", "node3", "--mac", MAC3, "--image", IMAGE)
    node3 = machines(host)["node3"]
    assert node3["address4"] and node3["fqdn"] == f"node3.{host.name}.home.arpa"
    wait_for("node3's dnsmasq entry", lambda: MAC3 in host.run("cat", DHCP_CONFIG).stdout)
    assert node3["fqdn"] in host.hc("dns", "ls").stdout
    host.hc("machine", "rm", "node3")
    assert "node3" not in machines(host)
    assert "node3" not in {i["name"] for i in host.hc("ls", json=True)}
    assert "node3" not in {i["name"] for i in host.hc("network", "ls", json=True)["instances"]}
    assert node3["fqdn"] not in host.hc("dns", "ls").stdout
    wait_for("node3's dnsmasq entry gone",
             lambda: MAC3 not in host.run("cat", DHCP_CONFIG).stdout)
    hc_fails(host, "machine", "rm", "node3", message="no machine named 'node3'")
