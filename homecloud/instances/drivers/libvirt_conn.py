"""libvirt, as homecloud uses it for q35 VMs: one connection to qemu:///system through
libvirt-python, persistent domains defined, started, stopped and removed by name.

A host without libvirt-python or without a running libvirtd gets one line naming what to
install or start (exit 3).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homecloud.errors import HostError
from homecloud.instances.drivers.qmp import ProtocolError

if TYPE_CHECKING:
    import libvirt

LIBVIRT_URI = "qemu:///system"
# Where libvirt keeps a domain's TPM state (swtpm), by domain UUID.
SWTPM_STATE = Path("/var/lib/libvirt/swtpm")
POLL = 0.2
AGENT_TIMEOUT = 10  # seconds a guest agent command may take to answer (TCG guests are slow)


def libvirt_module() -> Any:
    try:
        import libvirt
    except ImportError:
        raise HostError("libvirt-python is not installed in homecloud's environment: pip "
                        "install libvirt-python (it builds against libvirt-dev)") from None
    return libvirt


def connect(uri: str = LIBVIRT_URI) -> libvirt.virConnect:
    lv = libvirt_module()
    # libvirt prints its errors on stderr by default; they reach the user as HostErrors.
    lv.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        return lv.open(uri)
    except lv.libvirtError as exc:
        raise HostError(f"libvirtd does not answer at {uri} ({_first_line(exc)}): apt-get "
                        "install libvirt-daemon-system and start libvirtd.service") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or ["no message"])[0]


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    lv = libvirt_module()
    try:
        return conn.lookupByName(name)
    except lv.libvirtError as exc:
        if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
            return None
        raise


def define(conn: libvirt.virConnect, xml: str) -> libvirt.virDomain:
    lv = libvirt_module()
    try:
        return conn.defineXML(xml)
    except lv.libvirtError as exc:
        raise HostError(f"libvirt refused the VM's domain: {_first_line(exc)}") from None


def is_active(dom: libvirt.virDomain) -> bool:
    lv = libvirt_module()
    try:
        return bool(dom.isActive())
    except lv.libvirtError as exc:
        if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
            return False
        raise


def wait_inactive(dom: libvirt.virDomain, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_active(dom):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def shut_down(dom: libvirt.virDomain, timeout: float) -> None:
    """Press the VM's power button (ACPI) and wait up to ``timeout`` for the guest to power
    off; then pull the plug."""
    lv = libvirt_module()
    if not is_active(dom):
        return
    # Not running any more, or no ACPI yet (early boot): destroyed below.
    with contextlib.suppress(lv.libvirtError):
        dom.shutdownFlags(lv.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    if not wait_inactive(dom, timeout):
        destroy(dom)


def was_destroyed(dom: libvirt.virDomain) -> bool:
    """Whether the domain is off because someone destroyed it (not a poweroff or a crash)."""
    lv = libvirt_module()
    try:
        state, reason = dom.state()
    except lv.libvirtError:
        return False
    return bool(state == lv.VIR_DOMAIN_SHUTOFF and reason == lv.VIR_DOMAIN_SHUTOFF_DESTROYED)


def destroy(dom: libvirt.virDomain) -> None:
    lv = libvirt_module()
    try:
        dom.destroy()
    except lv.libvirtError as exc:
        if exc.get_error_code() not in (lv.VIR_ERR_OPERATION_INVALID, lv.VIR_ERR_NO_DOMAIN):
            raise


def undefine(conn: libvirt.virConnect, name: str, uuid: str) -> None:
    """Remove the domain ``name`` with its NVRAM and TPM state; idempotent."""
    lv = libvirt_module()
    dom = lookup(conn, name)
    if dom is not None:
        destroy(dom)
        flags = (lv.VIR_DOMAIN_UNDEFINE_NVRAM | lv.VIR_DOMAIN_UNDEFINE_TPM
                 | lv.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                 | lv.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | lv.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        try:
            dom.undefineFlags(flags)
        except lv.libvirtError as exc:
            if exc.get_error_code() != lv.VIR_ERR_NO_DOMAIN:
                raise
    # A domain undefined by hand keeps its TPM state: it is found by UUID all the same.
    shutil.rmtree(SWTPM_STATE / uuid, ignore_errors=True)


def agent_command(dom: libvirt.virDomain, command: str, arguments: dict[str, Any] | None = None,
                  timeout: int = 5) -> Any:
    """A qemu-guest-agent command through libvirt (which owns the agent's channel)."""
    import libvirt_qemu

    request = {"execute": command, **({"arguments": arguments} if arguments else {})}
    reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(request), timeout, 0)
    return json.loads(reply).get("return")


def agent_answers(dom: libvirt.virDomain, timeout: int = 1) -> bool:
    lv = libvirt_module()
    try:
        agent_command(dom, "guest-ping", timeout=timeout)
    except lv.libvirtError:
        return False
    return True


class DomainAgent:
    """The guest agent of domain ``dom`` (instance ``instance``) as qmp.AgentCommands: libvirt
    holds the agent's channel itself, so commands go through libvirtd."""

    def __init__(self, dom: libvirt.virDomain, instance: str) -> None:
        self.dom = dom
        self.instance = instance

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        lv = libvirt_module()
        try:
            return agent_command(self.dom, command, arguments, timeout=AGENT_TIMEOUT)
        except lv.libvirtError as exc:
            code = exc.get_error_code()
            if code in (lv.VIR_ERR_OPERATION_INVALID, lv.VIR_ERR_NO_DOMAIN):
                raise ProtocolError(f"VM {self.instance} is not running") from None
            if code == lv.VIR_ERR_AGENT_UNRESPONSIVE:
                raise ProtocolError(f"VM {self.instance}'s guest agent does not answer: its "
                                    "image has no qemu-guest-agent, or the guest is still "
                                    "booting") from None
            raise ProtocolError(agent_error(_first_line(exc))) from None


def agent_error(message: str) -> str:
    """The guest agent's own words in a libvirt error ("... error was 'WORDS'"), as the microVM
    path reports them; libvirt's whole message when it has none."""
    match = re.search(r"error was '(.*)'$", message)
    return match.group(1) if match else message
