"""Network boot details: the iPXE binaries copied into homecloud's boot directory, UEFI HTTP
boot in dnsmasq's configuration, boot offers read off the wire, iPXE over HTTP."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from homecloud.machines.boot_files import fill_shared_cache, stage_boot_files
from homecloud.machines.dnsmasq_conf import (
    DhcpRange,
    DnsmasqConfig,
    KnownMachine,
    ProvisionSettings,
)
from homecloud.machines.records import MachineRecords
from homecloud.provision.answers import ProvisionAnswers
from homecloud.provision.dhcp_probe import discover_packet, parse_offer
from homecloud.provision.server import ProvisionServer
from homecloud.state.store import Store
from tests.unit.test_machine_boot import _get

MAC = "52:54:00:12:34:56"
EFI_URL = "http://10.9.0.1:8067/boot/ipxe.efi"


# -- the boot directory ----------------------------------------------------------------------------
@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A package directory laid out as Debian's ipxe: ipxe.efi a symlink into a /boot."""
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "ipxe.efi").write_bytes(b"efi" * 1000)
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "undionly.kpxe").write_bytes(b"kpxe" * 100)
    (lib / "ipxe.efi").symlink_to(tmp_path / "boot" / "ipxe.efi")
    return lib


def test_the_boot_directory_holds_real_files_resolved_from_the_package(
        tmp_path: Path, package: Path) -> None:
    staged = stage_boot_files(tmp_path / "serve", package, tmp_path / "cache")
    assert [(s.name, s.problem) for s in staged] == [("undionly.kpxe", None), ("ipxe.efi", None)]
    efi = tmp_path / "serve" / "ipxe.efi"
    assert not efi.is_symlink() and efi.read_bytes() == b"efi" * 1000
    assert oct(efi.stat().st_mode & 0o777) == "0o644"
    assert (tmp_path / "cache" / "ipxe.efi").read_bytes() == b"efi" * 1000
    assert sorted(p.name for p in (tmp_path / "serve").iterdir()) == ["ipxe.efi",
                                                                       "undionly.kpxe"]


def test_a_changed_package_file_is_copied_again(tmp_path: Path, package: Path) -> None:
    stage_boot_files(tmp_path / "serve", package, None)
    (tmp_path / "boot" / "ipxe.efi").write_bytes(b"newer")
    os.utime(tmp_path / "boot" / "ipxe.efi", (1, 1))
    stage_boot_files(tmp_path / "serve", package, None)
    assert (tmp_path / "serve" / "ipxe.efi").read_bytes() == b"newer"


def test_where_boot_is_not_visible_the_shared_cache_serves(tmp_path: Path,
                                                            package: Path) -> None:
    assert fill_shared_cache(package, tmp_path / "cache") == ["undionly.kpxe", "ipxe.efi"]
    (tmp_path / "boot" / "ipxe.efi").unlink()  # the symlink now dangles, as in a dev host
    assert fill_shared_cache(package, tmp_path / "cache") == ["undionly.kpxe"]
    staged = stage_boot_files(tmp_path / "serve", package, tmp_path / "cache")
    assert staged[1].origin == tmp_path / "cache" / "ipxe.efi" and staged[1].problem is None
    assert (tmp_path / "serve" / "ipxe.efi").read_bytes() == b"efi" * 1000


def test_a_file_nowhere_to_be_found_is_said_and_not_served_stale(tmp_path: Path,
                                                                 package: Path) -> None:
    stage_boot_files(tmp_path / "serve", package, None)
    (tmp_path / "boot" / "ipxe.efi").unlink()
    (package / "undionly.kpxe").unlink()
    staged = stage_boot_files(tmp_path / "serve", package, tmp_path / "cache")
    assert staged[1].origin is None
    assert f"points to {tmp_path / 'boot' / 'ipxe.efi'}, which is not visible here" in str(
        staged[1].problem)
    assert staged[0].problem == f"{package / 'undionly.kpxe'} is missing: apt-get install ipxe"
    assert list((tmp_path / "serve").iterdir()) == []


# -- dnsmasq: UEFI HTTP boot -----------------------------------------------------------------------
def _settings(mode: str) -> ProvisionSettings:
    address = IPv4Interface("10.9.0.1/24")
    return ProvisionSettings("hc0", address, mode=mode,
                             dhcp_range=DhcpRange.parse("10.9.0.100-10.9.0.150", address)
                             if mode == "dhcp" else None)


@pytest.mark.parametrize("mode", ["proxy", "dhcp"])
def test_uefi_http_boot_clients_get_the_url_of_ipxe_and_their_vendor_class(mode: str) -> None:
    text = DnsmasqConfig(_settings(mode), [KnownMachine(MAC, "node1")],
                         Path("/srv/boot")).render()
    lines = text.splitlines()
    assert "tftp-root=/srv/boot" in lines
    assert "dhcp-match=set:efihttp,option:client-arch,16" in lines
    assert "dhcp-option-force=tag:efihttp,option:vendor-class,HTTPClient" in lines
    assert f"dhcp-boot=tag:!ipxe,tag:efihttp,{EFI_URL}" in lines
    # In proxy mode dnsmasq answers only PXE clients: HTTPClient must count as one.
    assert ("dhcp-pxe-vendor=PXEClient,HTTPClient" in lines) == (mode == "proxy")


# -- offers off the wire ---------------------------------------------------------------------------
def _reply(request: bytes, options: bytes, file: bytes = b"") -> bytes:
    packet = bytearray(request[:240])
    packet[0] = 2
    packet[16:20] = bytes([10, 9, 0, 5])
    packet[108:108 + len(file)] = file
    return bytes(packet) + options + b"\xff"


def test_an_offer_is_read_with_its_boot_file_and_vendor_class() -> None:
    request = discover_packet(7, b"\x52\x54\x00\x12\x34\x56",
                              {93: b"\x00\x10", 60: b"HTTPClient"})
    assert bytes([93, 2, 0, 16]) in request and bytes([60, 10]) + b"HTTPClient" in request
    offer = parse_offer(_reply(request, bytes([53, 1, 2, 54, 4, 10, 9, 0, 1, 60, 10])
                               + b"HTTPClient", EFI_URL.encode()), 7)
    assert offer is not None
    assert (offer.server, offer.address) == (IPv4Address("10.9.0.1"), IPv4Address("10.9.0.5"))
    assert (offer.boot_file, offer.vendor_class) == (EFI_URL, "HTTPClient")
    # Option 67 wins over the header's file field; an ACK is not an offer.
    offer = parse_offer(_reply(request, bytes([53, 1, 2, 67, 3]) + b"a.b", b"c.d"), 7)
    assert offer is not None and offer.boot_file == "a.b"
    assert parse_offer(_reply(request, bytes([53, 1, 5])), 7) is None


# -- iPXE over HTTP --------------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    answers = ProvisionAnswers(MachineRecords(Store(tmp_path / "state.db")), "http://x",
                               lambda line: None)
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "ipxe.efi").write_bytes(b"\x4d\x5a" + b"e" * 500_000)
    httpd = ProvisionServer(("127.0.0.1", 0), answers, tmp_path / "installer",
                            boot_dir=tmp_path / "boot")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_uefi_ipxe_binary_is_served_over_http(server: str) -> None:
    assert _get(f"{server}/boot/ipxe.efi") == (200, b"\x4d\x5a" + b"e" * 500_000)
    status, body = _get(f"{server}/boot/undionly.kpxe")
    assert status == 404 and b"undionly.kpxe is missing" in body
    status, body = _get(f"{server}/boot/..%2Fstate.db")
    assert status == 404 and b"no boot file" in body
