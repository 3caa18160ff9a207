"""Bare-metal machines as the agent serves them: `hc machine add|ls|logs|reinstall|rm` and
`hc provision enable|disable|status`.

A machine is an instance of kind "machine" (its service set: row, lease, DNS name, network
boot) plus its machines row (MAC, disk, keys, workflow, progress). Network boot is two units of
homecloud's own: hc-provision (HTTP) and hc-dhcp (dnsmasq), configured from the state store.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from homecloud.errors import Conflict, HomecloudError, UserError
from homecloud.images.catalog import ImageInfo
from homecloud.images.machineimage import machine_image_problem as tree_problem
from homecloud.instances.manager import InstanceManager
from homecloud.instances.spec import InstanceSpec
from homecloud.machines import DHCP_UNIT, PROVISION_UNIT
from homecloud.machines import dnsmasq_conf as boot
from homecloud.machines import progress as prog
from homecloud.machines.dhcp_log import ignored_macs
from homecloud.machines.dnsmasq_conf import FULL, PROXY, DhcpRange, ProvisionSettings
from homecloud.machines.records import MachineRecord, MachineRecords
from homecloud.machines.spec import MachineSpec
from homecloud.machines.workflow import load_workflow
from homecloud.provision.dhcp_probe import PROBE_MAC_PREFIX
from homecloud.provision.interfaces import ipv4_addresses
from homecloud.systemd.journal import unit_lines
from homecloud.systemd.transient import Systemd

# Answers "is another DHCP server on this link?" (dhcp_probe.py); None: nobody answered.
DhcpProbe = Callable[[str], str | None]
# Builds the installer machines boot, unless its build is current (installer/build.py).
BuildInstaller = Callable[[], object]
# How much of hc-dhcp's log `hc provision status` reads for ignored MACs (log-dhcp writes about
# twenty lines per answered request, one per ignored one).
DHCP_LOG_LINES = 2000


def machine_image_problem(image: ImageInfo) -> str | None:
    """Why ``image`` cannot go on a bare machine, or None."""
    if image.vm:
        return (f"image {image.name!r} is a VM disk; a machine needs an image tree with a "
                f"kernel (`hc image build debian --machine`)")
    return tree_problem(image.name, Path(image.path))


class MachineService:
    def __init__(self, manager: InstanceManager, systemd: Systemd,
                 probe: DhcpProbe | None = None,
                 build_installer: BuildInstaller | None = None) -> None:
        self.manager = manager
        self.build_installer = build_installer
        self.records = MachineRecords(manager.store)
        self.systemd = systemd
        self.probe = probe
        if manager.network is not None:
            # The bridge's firewall lets instances reach the host only for DNS: booting machines
            # on it need DHCP, TFTP and HTTP too, while network boot serves there.
            manager.network.host_services = self.host_services

    def start(self) -> None:
        """At the agent's start: forget half-made machines, open the firewall for network boot
        if it serves."""
        self.remove_orphans()
        if self.manager.network is not None:
            self._refresh_firewall()

    def host_services(self) -> tuple[tuple[str, int], ...]:
        data = self.records.settings()
        network = self.manager.network
        if data is None or network is None or network.error is not None:
            return ()
        settings = ProvisionSettings.from_json(data)
        if settings.interface != network.plan.bridge:
            return ()
        return (("udp", boot.DHCP_PORT), ("udp", boot.TFTP_PORT), ("tcp", settings.port))

    def _refresh_firewall(self) -> None:
        network = self.manager.network
        if network is not None and network.error is None:
            network.refresh_firewall()

    def remove_orphans(self) -> list[str]:
        """Remove machines rows with no instance: `add` writes the row first, so a crash
        before the instance is recorded leaves one (the instance's own removal takes the row
        with it otherwise)."""
        instances = {i.name for i in self.manager.records.all()}
        orphans = [r.name for r in self.records.all() if r.name not in instances]
        for name in orphans:
            self.records.delete(name)
        return orphans

    # -- machines --------------------------------------------------------------------------------
    def add(self, spec: MachineSpec) -> dict[str, Any]:
        spec = spec.validated()
        problem = machine_image_problem(self.manager.images.get(spec.image))
        if problem:
            raise UserError(problem)
        load_workflow(spec.workflow)  # NotFound / UserError naming the file
        if self.manager.records.get(spec.name) is not None:
            raise Conflict(f"an instance named {spec.name!r} already exists; pick another name")
        self.records.insert(spec)  # Conflict for a MAC or name taken
        try:
            self.manager.create(InstanceSpec(name=spec.name, image=spec.image, kind="machine",
                                             ssh_keys=spec.ssh_keys))
        except BaseException:
            self.records.delete(spec.name)
            raise
        return self.describe(self.records.require(spec.name))

    def all(self) -> list[dict[str, Any]]:
        return [self.describe(record) for record in self.records.all()]

    def get(self, name: str) -> dict[str, Any]:
        return self.describe(self.records.require(name))

    def reinstall(self, name: str) -> dict[str, Any]:
        self.records.require(name)
        self.records.reset(name)
        return self.get(name)

    def remove(self, name: str) -> None:
        self.records.require(name)
        self.manager.remove(name, force=True)

    def log(self, name: str, after: int = 0,
            limit: int | None = None) -> builtins.list[dict[str, Any]]:
        self.records.require(name)
        return [vars(line) for line in self.records.log(name, after, limit)]

    def describe(self, record: MachineRecord) -> dict[str, Any]:
        steps = record.steps
        return {**record.spec.to_json(), "state": record.state,
                "current_step": prog.current_step(steps) if record.state in
                (prog.INSTALLING, prog.MACHINE_FAILED) else None,
                "steps": [s.to_json() for s in steps], "boots": record.boots,
                "last_boot": record.last_boot, "address4": record.network.get("address4"),
                "fqdn": record.network.get("fqdn")}

    # -- network boot ----------------------------------------------------------------------------
    def enable(self, interface: str | None, dhcp_range: str | None) -> dict[str, Any]:
        settings = self._settings(interface, dhcp_range)
        if settings.mode == FULL and self.probe is not None:
            other = self.probe(settings.interface)
            if other is not None:
                raise Conflict(f"another DHCP server ({other}) answers on {settings.interface}: "
                               "full DHCP would fight it; use proxyDHCP (drop --dhcp-range) "
                               "or turn that server off")
        installer_error = self._build_installer()
        previous = self.records.settings()
        self.records.put_settings(settings.to_json())
        self._refresh_firewall()
        try:
            for unit in (PROVISION_UNIT, DHCP_UNIT):
                self.systemd.stop_unit(unit)
                self.systemd.reset_failed(unit)
                self.systemd.start_unit(unit)
        except HomecloudError:
            self.records.put_settings(previous)
            self._refresh_firewall()
            for unit in (DHCP_UNIT, PROVISION_UNIT):
                self.systemd.stop_unit(unit)
            raise
        return {**self.status(), "installer_error": installer_error}

    def _build_installer(self) -> str | None:
        """Build the installer now rather than at a machine's first boot; why it could not be
        built (the machines' boot fails until it is), or None."""
        if self.build_installer is None:
            return None
        try:
            self.build_installer()
        except HomecloudError as exc:
            return exc.message
        return None

    def _settings(self, interface: str | None, dhcp_range: str | None) -> ProvisionSettings:
        network = self.manager.network
        plan = network.plan if network is not None else None
        name = interface or (plan.bridge if plan is not None else None)
        if name is None:
            raise UserError("name the interface machines boot on: --interface IF")
        addresses = ipv4_addresses(name)
        if not addresses:
            raise UserError(f"interface {name} has no IPv4 address: network boot needs one")
        address = addresses[0]
        rng = DhcpRange.parse(dhcp_range, address) if dhcp_range else None
        on_bridge = plan is not None and name == plan.bridge
        return ProvisionSettings(
            interface=name, address=address, mode=FULL if rng else PROXY, dhcp_range=rng,
            gateway=address.ip, dns=(IPv4Address(address.ip),) if on_bridge else (),
            domain=plan.names.origin if (plan is not None and on_bridge) else "")

    def disable(self) -> dict[str, Any]:
        for unit in (DHCP_UNIT, PROVISION_UNIT):
            self.systemd.stop_unit(unit)
        self.records.put_settings(None)
        self._refresh_firewall()
        return self.status()

    def ignored_macs(self) -> builtins.list[dict[str, Any]]:
        """The MACs hc-dhcp did not answer (its recent log), known machines left out: a machine
        with no iPXE of its own never asks hc-provision for its boot script."""
        known = {record.spec.mac for record in self.records.all()}
        counts = ignored_macs(unit_lines(DHCP_UNIT, DHCP_LOG_LINES))
        return [{"mac": mac, "count": count} for mac, count in sorted(counts.items())
                if mac not in known and not mac.startswith(PROBE_MAC_PREFIX)]

    def status(self) -> dict[str, Any]:
        data = self.records.settings()
        units = {unit: (s.active_state if (s := self.systemd.unit_status(unit)) else "inactive")
                 for unit in (PROVISION_UNIT, DHCP_UNIT)}
        settings = ProvisionSettings.from_json(data) if data else None
        return {"enabled": settings is not None,
                "settings": settings.to_json() if settings else None,
                "url": settings.url if settings else None, "units": units,
                "unknown_macs": [vars(u) for u in self.records.unknown()],
                "ignored_macs": self.ignored_macs(),
                "installer_error": None}

