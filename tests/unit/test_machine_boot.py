"""Network boot, apart from the network: MACs, step progress, dnsmasq's configuration, boot
scripts and the provisioning server's answers (over a real HTTP socket on loopback)."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from homecloud.errors import UserError
from homecloud.machines import progress
from homecloud.machines.boot_script import installer_script
from homecloud.machines.dhcp_log import ignored_macs
from homecloud.machines.dnsmasq_conf import (
    DhcpRange,
    DnsmasqConfig,
    KnownMachine,
    ProvisionSettings,
)
from homecloud.machines.records import MachineRecords
from homecloud.machines.spec import MachineSpec, normalize_mac
from homecloud.machines.workflow import parse_workflow
from homecloud.network.firewall import FirewallConfig, render_ruleset
from homecloud.provision.answers import ProvisionAnswers
from homecloud.provision.dhcp_probe import discover_packet, offer_from
from homecloud.provision.server import ProvisionServer, installer_file
from homecloud.state.store import Store

MAC = "52:54:00:12:34:56"
FLOW = parse_workflow({"actions": [{"id": "wipe", "action": "wipe-disk"},
                                   {"id": "image", "action": "stream-image"}]}, "install", "t")


# -- MACs and specs --------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["52-54-00-12-34-56", "52:54:00:12:34:56", " 52:54:00:12:34:56"])
def test_macs_are_normalised(text: str) -> None:
    assert normalize_mac(text) == MAC


@pytest.mark.parametrize(("text", "message"), [
    ("52:54:00:12:34", "is invalid"), ("52:54:00:12:34:5g", "is invalid"),
    ("52:54-00:12:34:56", "is invalid"), ("01:00:5e:00:00:01", "multicast"),
    ("00:00:00:00:00:00", "not a machine's"), ("", "is invalid"),
])
def test_bad_macs_are_refused(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        normalize_mac(text)


@pytest.mark.parametrize(("spec", "message"), [
    (MachineSpec("Node_1", MAC, "debian"), "instance name"),
    (MachineSpec("node1", MAC, "../x"), "image name"),
    (MachineSpec("node1", MAC, "debian", disk="sda"), "--disk 'sda' is invalid"),
    (MachineSpec("node1", MAC, "debian", disk="/dev/sda", diskless=True), "exclude each other"),
    (MachineSpec("node1", MAC, "debian", ssh_keys=("hello",)), "not an SSH public key"),
    (MachineSpec("node1", MAC, "debian", workflow="a/b"), "workflow name"),
])
def test_bad_machine_specs_are_refused(spec: MachineSpec, message: str) -> None:
    with pytest.raises(UserError, match=message):
        spec.validated()


def test_a_spec_picks_its_default_workflow() -> None:
    assert MachineSpec("n", MAC.upper(), "debian").validated().workflow == "install"
    assert MachineSpec("n", MAC, "debian", diskless=True).validated().workflow == "diskless"


# -- progress --------------------------------------------------------------------------------------
def test_events_fold_into_step_states_and_resume_points() -> None:
    steps = progress.fresh_steps(["wipe", "image", "boot"])
    assert progress.resume_from(steps) is None
    steps = progress.apply_event(steps, "wipe", "started", "", 10.0)
    assert progress.current_step(steps) == "wipe"
    steps = progress.apply_event(steps, "wipe", "ok", "wiped", 12.5)
    assert steps[0].duration == 2.5 and steps[0].message == "wiped"
    steps = progress.apply_event(steps, "image", "failed", "stream cut", 20.0)
    assert progress.machine_state_after(steps) == progress.MACHINE_FAILED
    assert progress.current_step(steps) == "image"
    assert progress.resume_from(steps) == "image"
    assert not progress.all_ok(steps)
    with pytest.raises(UserError, match="no step 'nope'"):
        progress.apply_event(steps, "nope", "ok", "", 1.0)
    with pytest.raises(UserError, match="status 'done' is invalid"):
        progress.apply_event(steps, "wipe", "done", "", 1.0)


# -- dnsmasq ---------------------------------------------------------------------------------------
def _settings(mode: str = "proxy") -> ProvisionSettings:
    address = IPv4Interface("10.9.0.1/24")
    return ProvisionSettings("hc0", address, mode=mode,
                             dhcp_range=DhcpRange.parse("10.9.0.100-10.9.0.150", address)
                             if mode == "dhcp" else None)


def test_proxy_dhcp_offers_boot_only_to_known_macs() -> None:
    text = DnsmasqConfig(_settings(), [KnownMachine(MAC, "node1")]).render()
    assert "dhcp-range=10.9.0.0,proxy" in text
    assert "dhcp-ignore=tag:!known" in text
    assert f"dhcp-host={MAC},set:machine" in text
    assert 'pxe-service=tag:!ipxe,x86PC,"homecloud",undionly.kpxe' in text
    assert 'pxe-service=tag:!ipxe,x86-64_EFI,"homecloud",ipxe.efi' in text
    assert "http://10.9.0.1:8067/boot.ipxe?mac=${netX/mac}" in text
    assert "port=0" in text


def test_full_dhcp_gives_known_machines_their_leases() -> None:
    text = DnsmasqConfig(_settings("dhcp"), [
        KnownMachine(MAC, "node1", IPv4Address("10.9.0.5"))]).render()
    assert f"dhcp-host={MAC},10.9.0.5,node1" in text
    assert "dhcp-range=10.9.0.100,10.9.0.150,255.255.255.0,1h" in text
    assert "dhcp-boot=tag:!ipxe,tag:efi,ipxe.efi" in text
    assert "dhcp-boot=tag:!ipxe,tag:!efi,tag:!efihttp,undionly.kpxe" in text
    assert "dhcp-match=set:efi,option:client-arch,7" in text


@pytest.mark.parametrize(("text", "message"), [
    ("10.9.0.100", "is invalid"), ("10.9.0.150-10.9.0.100", "before the first"),
    ("10.8.0.1-10.8.0.9", "not inside"), ("10.9.0.1-10.9.0.9", "host's own address"),
    ("a-b", "is invalid"),
])
def test_bad_dhcp_ranges_are_refused(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        DhcpRange.parse(text, IPv4Interface("10.9.0.1/24"))


def test_settings_round_trip_through_json() -> None:
    settings = _settings("dhcp")
    assert ProvisionSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


def test_the_installer_script_carries_name_token_and_url() -> None:
    script = installer_script("http://10.9.0.1:8067", "node1", "tok")
    assert script.startswith("#!ipxe\n")
    assert ("kernel http://10.9.0.1:8067/installer/vmlinuz initrd=initrd.img "
            "hc.url=http://10.9.0.1:8067 hc.machine=node1 hc.token=tok") in script
    with pytest.raises(ValueError):
        installer_script("http://x", "node1", "a b")


def test_the_dhcp_probe_reads_offers_to_its_own_transaction() -> None:
    packet = bytearray(discover_packet(0x1234, b"\x02" * 6))
    packet[0] = 2  # a reply
    offer = bytes(packet[:240]) + bytes([53, 1, 2, 54, 4, 10, 0, 0, 1, 255])
    assert offer_from(offer, 0x1234) == IPv4Address("10.0.0.1")
    assert offer_from(offer, 0x9999) is None
    assert offer_from(bytes(packet), 0x1234) is None  # a request, not an offer


# -- the provisioning server -----------------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, MachineRecords, list[str]]]:
    records = MachineRecords(Store(tmp_path / "state.db"))
    logged: list[str] = []
    answers = ProvisionAnswers(records, "http://127.0.0.1:0", logged.append,
                               load=lambda name: FLOW)
    (tmp_path / "installer").mkdir()
    (tmp_path / "installer" / "vmlinuz").write_bytes(b"k" * 3_000_000)
    httpd = ProvisionServer(("127.0.0.1", 0), answers, tmp_path / "installer")
    answers.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield answers.url, records, logged
    httpd.shutdown()
    httpd.server_close()


def _get(url: str, token: str | None = None, body: Any = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _token(script: bytes) -> str:
    return script.decode().split("hc.token=")[1].split()[0]


def test_an_unknown_mac_is_not_booted_and_is_remembered(server: Any) -> None:
    url, records, logged = server
    status, body = _get(f"{url}/boot.ipxe?mac=52:54:00:00:00:99")
    assert status == 200 and b"unknown machine 52:54:00:00:00:99" in body
    assert b"kernel" not in body
    assert [u.mac for u in records.unknown()] == ["52:54:00:00:00:99"]
    assert "unknown machine 52:54:00:00:00:99" in logged[-1]
    status, body = _get(f"{url}/boot.ipxe?mac=zz")
    assert b"kernel" not in body


def test_a_machine_installs_with_its_own_token_only(server: Any) -> None:
    url, records, _ = server
    records.insert(MachineSpec("node1", MAC, "debian", workflow="install"))
    records.insert(MachineSpec("node2", "52:54:00:12:34:57", "debian", workflow="install"))
    token1 = _token(_get(f"{url}/boot.ipxe?mac={MAC}")[1])
    token2 = _token(_get(f"{url}/boot.ipxe?mac=52:54:00:12:34:57")[1])
    # One machine's token is refused for another's paths, and no token at all too.
    assert _get(f"{url}/m/node1/workflow", token2)[0] == 403
    assert _get(f"{url}/m/node1/workflow")[0] == 403
    assert _get(f"{url}/m/nobody/workflow", token1)[0] == 403
    status, body = _get(f"{url}/m/node1/workflow", token1)
    assert status == 200
    flow = json.loads(body)
    assert [a["id"] for a in flow["actions"]] == ["wipe", "image"]
    assert flow["machine"]["name"] == "node1" and flow["resume_from"] is None
    assert records.require("node1").state == progress.INSTALLING
    # /done before every step is ok is refused: a half-written disk is never "installed".
    assert _get(f"{url}/m/node1/done", token1, {})[0] == 400
    for step in ("wipe", "image"):
        assert _get(f"{url}/m/node1/events", token1,
                    {"step": step, "status": "ok", "log": [f"{step} done"]})[0] == 200
    assert _get(f"{url}/m/node1/events", token1, {"step": "x", "status": "ok"})[0] == 400
    assert _get(f"{url}/m/node1/events", token1, {"step": "wipe", "status": 1})[0] == 400
    assert [line.line for line in records.log("node1")] == ["wipe done", "image done"]
    assert _get(f"{url}/m/node1/done", token1, {})[0] == 200
    assert records.require("node1").state == progress.INSTALLED
    assert b"\nexit\n" in _get(f"{url}/boot.ipxe?mac={MAC}")[1]
    # node2's progress was never touched.
    assert records.require("node2").steps == ()


def test_a_new_boot_mid_install_resumes_and_replaces_the_token(server: Any) -> None:
    url, records, _ = server
    records.insert(MachineSpec("node1", MAC, "debian", workflow="install"))
    old = _token(_get(f"{url}/boot.ipxe?mac={MAC}")[1])
    _get(f"{url}/m/node1/workflow", old)
    _get(f"{url}/m/node1/events", old, {"step": "wipe", "status": "ok"})
    new = _token(_get(f"{url}/boot.ipxe?mac={MAC}")[1])
    assert _get(f"{url}/m/node1/workflow", old)[0] == 403
    flow = json.loads(_get(f"{url}/m/node1/workflow", new)[1])
    assert flow["resume_from"] == "image"


def test_installer_files_are_served_and_others_are_not(server: Any) -> None:
    url, _, _ = server
    status, body = _get(f"{url}/installer/vmlinuz")
    assert status == 200 and len(body) == 3_000_000
    assert _get(f"{url}/installer/initrd.img")[0] == 404
    assert _get(f"{url}/installer/..%2fstate.db")[0] == 404
    assert _get(f"{url}/nothing")[0] == 404


def test_duplicate_macs_and_names_are_refused(tmp_path: Path) -> None:
    from homecloud.errors import Conflict

    records = MachineRecords(Store(tmp_path / "state.db"))
    records.insert(MachineSpec("node1", MAC, "debian", workflow="install"))
    with pytest.raises(Conflict, match=f"MAC address {MAC} is already machine 'node1'"):
        records.insert(MachineSpec("node2", MAC, "debian", workflow="install"))
    with pytest.raises(Conflict, match="machine 'node1' already exists"):
        records.insert(MachineSpec("node1", "52:54:00:12:34:57", "debian", workflow="install"))
    assert [r.name for r in records.all()] == ["node1"]
    records.delete("node1")
    assert records.all() == [] and records.log("node1") == []


def test_the_newest_installer_build_is_served(tmp_path: Path) -> None:
    assert installer_file(tmp_path / "none", "vmlinuz") == tmp_path / "none" / "vmlinuz"
    old, new, partial = tmp_path / "aaaa", tmp_path / "bbbb", tmp_path / ".build-x"
    for directory, when in ((old, 1000), (new, 2000), (partial, 3000)):
        directory.mkdir()
        (directory / "vmlinuz").write_bytes(b"k")
        os.utime(directory, (when, when))
    assert installer_file(tmp_path, "vmlinuz") == new / "vmlinuz"
    assert installer_file(tmp_path, "initrd.img") == tmp_path / "initrd.img"


def test_macs_dnsmasq_ignored_are_read_from_its_log() -> None:
    lines = [
        "dnsmasq-dhcp[269]: 2957688437 DHCPDISCOVER(hc0) 52:54:00:aa:00:09 ignored",
        "dnsmasq-dhcp[269]: 2957688437 DHCPDISCOVER(hc0) 52:54:00:aa:00:09 ignored",
        "dnsmasq-dhcp[269]: 1 DHCPREQUEST(eth0) 10.0.0.5 52:54:00:aa:00:0a ignored",
        "dnsmasq-dhcp[468]: 1788712730 PXE(hc0) 52:54:00:aa:00:0b proxy-ignored",
        "dnsmasq-dhcp[468]: 3949951247 PXE(hc0) 52:54:00:aa:00:01 proxy",
        "dnsmasq-dhcp[313]: 3278634002 DHCPACK(hc0) 10.18.167.2 52:54:00:aa:00:01 node1",
        "dnsmasq-dhcp[313]: 3278634002 tags: known, hc0",
    ]
    assert ignored_macs(lines) == {"52:54:00:aa:00:09": 2, "52:54:00:aa:00:0a": 1,
                                   "52:54:00:aa:00:0b": 1}


def test_network_boot_on_the_bridge_opens_only_its_ports_to_instances() -> None:
    document = render_ruleset(FirewallConfig(bridge="hc0", host_services=(
        ("udp", 67), ("udp", 69), ("tcp", 8067))))
    chain = [
        c["add"]["rule"]["expr"] for c in document["nftables"]
        if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == "instance_to_host"]
    opened = [(rule[0]["match"]["right"], rule[1]["match"]["right"]) for rule in chain
              if len(rule) == 3 and rule[1]["match"]["left"] == {
                  "payload": {"protocol": "th", "field": "dport"}}
              and isinstance(rule[0]["match"]["right"], str)]
    assert opened == [("udp", 67), ("udp", 69), ("tcp", 8067)]
    assert chain[-1] == [{"drop": None}]
