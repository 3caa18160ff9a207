"""Network boot details, on the wire, in a dev host of this module's own: the iPXE binaries
hc-dhcp serves over TFTP (and hc-provision over HTTP) are the ipxe package's real files even
though the dev host cannot see /boot, where Debian keeps ipxe.efi; a DHCP client in a network
namespace on hc0, asking as each kind of firmware asks (client architecture, vendor class), is
offered the boot file that firmware can load: undionly.kpxe for BIOS PXE, ipxe.efi for UEFI
PXE, the URL of ipxe.efi with the vendor class "HTTPClient" for UEFI HTTP boot; and the image
stream from hc-provision into the installer's own receiving end (receive-image.sh, run by
busybox's shell here) arrives whole, uncompressed on the bridge and zstd on a LAN, and a cut
or changed stream is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from homecloud.devhost import DevHost
from homecloud.machines.installer.build import SCRIPTS
from tests.system.baremetal import enable_provisioning, import_stand_in_image

IMAGE = "tiny-netboot"
MAC = "52:54:00:4e:00:01"
PACKAGE_EFI = Path("/usr/lib/ipxe/ipxe.efi")
CLIENT_NS = "hctboot"
# BIOS PXE, UEFI PXE (x86-64: 7 and 9), UEFI HTTP boot (x86-64: 16), as their firmware asks.
BIOS = (0, "PXEClient:Arch:00000:UNDI:002001")
UEFI_PXE = (7, "PXEClient:Arch:00007:UNDI:003016")
UEFI_PXE_9 = (9, "PXEClient:Arch:00009:UNDI:003016")
UEFI_HTTP = (16, "HTTPClient:Arch:00016:UNDI:003001")
ASK = """
import json, sys
from homecloud.provision.dhcp_probe import discover
arch, vendor = int(sys.argv[1]), sys.argv[2]
options = {93: arch.to_bytes(2, "big"), 60: vendor.encode(), 97: bytes(17)}
offers = discover("eth0", bytes.fromhex(sys.argv[3].replace(":", "")), options, timeout=4.0)
print(json.dumps([{"server": str(o.server), "address": str(o.address),
                   "boot_file": o.boot_file, "vendor_class": o.vendor_class} for o in offers]))
"""


@pytest.fixture(scope="module")
def host(private_devhost: DevHost) -> DevHost:
    """The module's dev host with full DHCP on hc0 and a machine it knows (a tiny image: nothing
    boots it)."""
    for tool in ("busybox", "dnsmasq", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"the network boot tests need {tool}")
    if not PACKAGE_EFI.resolve().is_file():
        pytest.skip(f"the network boot tests need the ipxe package ({PACKAGE_EFI})")
    host = private_devhost
    import_stand_in_image(host, IMAGE)
    enable_provisioning(host)
    host.hc("machine", "add", "node1", "--mac", MAC, "--image", IMAGE)
    return host


@pytest.fixture(scope="module")
def client(host: DevHost) -> Iterator[str]:
    """A network namespace in the dev host with eth0 (node1's MAC) on a veth into hc0."""
    host.run("ip", "netns", "add", CLIENT_NS)
    try:
        host.run("ip", "link", "add", "hctbootv0", "type", "veth", "peer", "name", "eth0",
                 "netns", CLIENT_NS)
        host.run("ip", "link", "set", "hctbootv0", "master", "hc0", "up")
        host.run("ip", "-n", CLIENT_NS, "link", "set", "eth0", "address", MAC, "up")
        yield CLIENT_NS
    finally:
        host.run("ip", "link", "delete", "hctbootv0", check=False)
        host.run("ip", "netns", "delete", CLIENT_NS, check=False)


def offers(host: DevHost, firmware: tuple[int, str]) -> list[dict[str, Any]]:
    """The DHCP offers node1 gets asking as ``firmware`` does."""
    result = host.run("ip", "netns", "exec", CLIENT_NS, host.python, "-c", ASK,
                      str(firmware[0]), firmware[1], MAC, timeout=30)
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def in_client(host: DevHost, *argv: str) -> str:
    return host.run("ip", "netns", "exec", CLIENT_NS, *argv, timeout=60).stdout


def test_the_dev_host_cannot_see_the_package_file(host: DevHost) -> None:
    """What the rest of the module relies on: served from the package's path, ipxe.efi would
    be missing here."""
    assert PACKAGE_EFI.is_symlink() and str(PACKAGE_EFI.resolve()).startswith("/boot/")
    assert host.run("test", "-e", str(PACKAGE_EFI), check=False).returncode != 0


def test_full_dhcp_offers_each_firmware_what_it_can_load(host: DevHost, client: str) -> None:
    for firmware, boot_file, vendor_class in [
            (BIOS, "undionly.kpxe", ""), (UEFI_PXE, "ipxe.efi", ""),
            (UEFI_PXE_9, "ipxe.efi", ""),
            (UEFI_HTTP, f"{gateway_url(host)}/boot/ipxe.efi", "HTTPClient")]:
        got = offers(host, firmware)
        assert len(got) == 1, (firmware, got)
        assert got[0]["address"] == machine_address(host), got
        assert (got[0]["boot_file"], got[0]["vendor_class"]) == (boot_file, vendor_class), got


def test_the_uefi_ipxe_binary_over_tftp_and_http_is_the_package_file(
        host: DevHost, client: str) -> None:
    """With the address full DHCP gave it, the client fetches ipxe.efi as firmware would: by
    TFTP from the offer's server (PXE), by HTTP from the offer's URL (HTTP boot)."""
    expected = hashlib.sha256(PACKAGE_EFI.resolve().read_bytes()).hexdigest()
    address = IPv4Interface(f"{machine_address(host)}/{gateway(host).network.prefixlen}")
    host.run("ip", "-n", CLIENT_NS, "addr", "replace", str(address), "dev", "eth0")
    try:
        server = offers(host, UEFI_PXE)[0]["server"]
        in_client(host, "curl", "-sf", "-o", "/tmp/tftp.efi", f"tftp://{server}/ipxe.efi")
        url = offers(host, UEFI_HTTP)[0]["boot_file"]
        in_client(host, "curl", "-sf", "-o", "/tmp/http.efi", url)
        in_client(host, "curl", "-sf", "-o", "/tmp/tftp.kpxe", f"tftp://{server}/undionly.kpxe")
    finally:
        host.run("ip", "-n", CLIENT_NS, "addr", "flush", "dev", "eth0")
    digests = host.run("sha256sum", "/tmp/tftp.efi", "/tmp/http.efi", "/tmp/tftp.kpxe").stdout
    found = {path: digest for digest, path in (line.split() for line in digests.splitlines())}
    assert found["/tmp/tftp.efi"] == found["/tmp/http.efi"] == expected
    kpxe = hashlib.sha256(Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()).hexdigest()
    assert found["/tmp/tftp.kpxe"] == kpxe


def test_proxy_dhcp_offers_http_boot_firmware_the_url(host: DevHost, client: str) -> None:
    """Beside a LAN's DHCP server, the proxy's offer carries no address; HTTP boot firmware
    does no PXE boot server discovery, so the URL and "HTTPClient" are in that offer itself.
    PXE firmware gets its file from the proxy's answer to a later request (port 4011)."""
    host.hc("provision", "enable", "--interface", "hc0")
    try:
        got = offers(host, UEFI_HTTP)
        assert [(o["address"], o["boot_file"], o["vendor_class"]) for o in got] == [
            ("0.0.0.0", f"{gateway_url(host)}/boot/ipxe.efi", "HTTPClient")]
        got = offers(host, UEFI_PXE)
        assert [(o["address"], o["vendor_class"]) for o in got] == [("0.0.0.0", "PXEClient")]
    finally:
        enable_provisioning(host)


def test_an_unknown_mac_gets_no_offer_whatever_it_asks_as(host: DevHost, client: str) -> None:
    host.run("ip", "-n", CLIENT_NS, "link", "set", "eth0", "address", "52:54:00:4e:00:99")
    try:
        result = host.run("ip", "netns", "exec", CLIENT_NS, host.python, "-c", ASK,
                          str(UEFI_HTTP[0]), UEFI_HTTP[1], "52:54:00:4e:00:99", timeout=30)
        assert json.loads(result.stdout) == []
    finally:
        host.run("ip", "-n", CLIENT_NS, "link", "set", "eth0", "address", MAC)


# -- the image stream ----------------------------------------------------------------------------
RECEIVED = "/var/lib/homecloud/pool/hct-netboot-receive"  # btrfs receive needs a btrfs directory


def fetch(host: DevHost, base: str, what: str) -> dict[str, str]:
    """node1's ``what`` from hc-provision at ``base`` into /tmp/<what>, as its installer would
    (with the token of a fresh boot script); the response's headers."""
    script = host.run("curl", "-sf", f"{base}/boot.ipxe?mac={MAC}").stdout
    token = script.split("hc.token=")[1].split()[0]
    head = host.run("curl", "-sf", "-D", "-", "-o", f"/tmp/{what}", "-H",
                    f"Authorization: Bearer {token}", f"{base}/m/node1/{what}").stdout
    return {k.strip().lower(): v.strip() for k, _, v in
            (line.partition(":") for line in head.splitlines()[1:]) if v}


def receive(host: DevHost, encoding: str, stream: str) -> tuple[int, str]:
    """The installer's receive-image.sh (in busybox's shell, as the installer runs it) fed
    ``stream``; its status and what it said. What it received is removed after."""
    host.run("mkdir", "-p", RECEIVED)
    result = host.run("sh", "-c", f"busybox sh {SCRIPTS / 'receive-image.sh'} {encoding} "
                      f"{RECEIVED} < {stream}", check=False)
    return result.returncode, result.stdout + result.stderr


def received_tree(host: DevHost) -> str:
    return host.run("sh", "-c", f"cd {RECEIVED}/* && find . -printf '%p %s %m\\n' | sort"
                    ).stdout


def clear_received(host: DevHost) -> None:
    host.run("sh", "-c", f"for s in {RECEIVED}/*; do [ -e \"$s\" ] && "
             "btrfs subvolume delete \"$s\" >/dev/null; done; true")


def image_tree(host: DevHost) -> str:
    return host.run("sh", "-c", f"cd /var/lib/homecloud/pool/images/{IMAGE} && "
                    "find . -printf '%p %s %m\\n' | sort").stdout


def test_on_the_bridge_the_image_stream_comes_whole_and_uncompressed(host: DevHost) -> None:
    """Machines on homecloud's bridge are this host's VMs: the stream is not compressed (the
    workflow tells the installer so), and the installer's receiving end takes it whole."""
    headers = fetch(host, gateway_url(host), "image")
    assert "content-encoding" not in headers, headers
    assert workflow(host, gateway_url(host))["image"]["encoding"] == "identity"
    size = int(host.run("stat", "-c", "%s", "/tmp/image").stdout)
    try:
        status, said = receive(host, "identity", "/tmp/image")
        assert status == 0, said
        assert f"received a stream of {size - 12} bytes" in said
        assert received_tree(host) == image_tree(host)
    finally:
        clear_received(host)


@pytest.mark.parametrize(("damage", "message"), [
    ("head -c -5", "does not end in its 12-byte trailer"),  # cut inside the trailer
    ("head -c -12", "does not end in its 12-byte trailer"),  # the trailer lost
    ("head -c -22", "unexpected EOF in stream"),  # cut before the end command
    ("cat - /etc/hostname", "does not end in its 12-byte trailer"),  # more after the trailer
    ("flip", "crc32 mismatch in command"),  # a bit changed on the way
])
def test_a_damaged_image_stream_is_refused(host: DevHost, damage: str, message: str) -> None:
    fetch(host, gateway_url(host), "image")
    if damage == "flip":
        host.run(host.python, "-c", "import sys; p = '/tmp/image'; d = bytearray(open(p, "
                 "'rb').read()); d[len(d) // 2] ^= 1; open(p + '.bad', 'wb').write(d)")
    else:
        host.run("sh", "-c", f"{damage} < /tmp/image > /tmp/image.bad")
    try:
        status, said = receive(host, "identity", "/tmp/image.bad")
        assert status != 0 and message in said, said
    finally:
        clear_received(host)


def test_on_a_lan_the_image_stream_is_compressed(host: DevHost) -> None:
    """On another interface (a LAN) the stream is zstd: the header and the workflow say so,
    and the installer's receiving end undoes it."""
    host.run("ip", "link", "add", "hctlan1", "type", "bridge")
    try:
        host.run("ip", "addr", "add", "192.0.2.1/24", "dev", "hctlan1")
        host.run("ip", "link", "set", "hctlan1", "up")
        host.hc("provision", "enable", "--interface", "hctlan1")
        lan = "http://192.0.2.1:8067"
        assert fetch(host, lan, "image").get("content-encoding") == "zstd"
        assert workflow(host, lan)["image"]["encoding"] == "zstd"
        status, said = receive(host, "zstd", "/tmp/image")
        assert status == 0, said
        assert received_tree(host) == image_tree(host)
        clear_received(host)
        status, said = receive(host, "identity", "/tmp/image")  # told the wrong encoding
        assert status != 0, said
    finally:
        clear_received(host)
        host.run("ip", "link", "delete", "hctlan1", check=False)
        enable_provisioning(host)


# -- helpers -------------------------------------------------------------------------------------
def workflow(host: DevHost, base: str) -> dict[str, Any]:
    script = host.run("curl", "-sf", f"{base}/boot.ipxe?mac={MAC}").stdout
    token = script.split("hc.token=")[1].split()[0]
    data: dict[str, Any] = json.loads(host.run(
        "curl", "-sf", "-H", f"Authorization: Bearer {token}", f"{base}/m/node1/workflow").stdout)
    return data


def gateway(host: DevHost) -> IPv4Interface:
    data = json.loads(host.run("ip", "-j", "-4", "addr", "show", "hc0").stdout)
    info = data[0]["addr_info"][0]
    return IPv4Interface(f"{info['local']}/{info['prefixlen']}")


def gateway_url(host: DevHost) -> str:
    return f"http://{gateway(host).ip}:8067"


def machine_address(host: DevHost) -> str:
    node1 = next(m for m in host.hc("machine", "ls", json=True) if m["name"] == "node1")
    return str(node1["address4"])
