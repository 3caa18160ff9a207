"""What homecloud's provisioning server answers, apart from HTTP: boot scripts, a machine's
workflow, its installer's events and its end. Each machine's installer proves itself with the
token its boot script carried; another machine's token is refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homecloud.errors import PermissionDenied, UserError
from homecloud.machines import progress
from homecloud.machines.boot_script import installer_script, local_disk_script, unknown_script
from homecloud.machines.records import MachineRecord, MachineRecords
from homecloud.machines.spec import normalize_mac
from homecloud.machines.workflow import Workflow, load_workflow

Log = Callable[[str], None]


@dataclass(frozen=True)
class ImageFacts:
    name: str
    snapshot: str | None = None
    size: int | None = None


class ProvisionAnswers:
    def __init__(self, records: MachineRecords, url: str, log: Log = print,
                 load: Callable[[str], Workflow] = load_workflow,
                 image_facts: Callable[[str], ImageFacts] = ImageFacts,
                 image_encoding: str = "zstd") -> None:
        self.records = records
        self.url = url
        self.log = log
        self.load = load
        self.image_facts = image_facts
        # How the image streams come ("zstd" or "identity"): the installer undoes it.
        self.image_encoding = image_encoding

    # -- /boot.ipxe ------------------------------------------------------------------------------
    def boot_script(self, mac_text: str) -> str:
        try:
            mac = normalize_mac(mac_text)
        except UserError:
            self.log(f"boot script asked for an invalid MAC {mac_text[:40]!r}")
            return unknown_script("(invalid)")
        record = self.records.by_mac(mac)
        if record is None:
            self.records.saw_unknown(mac)
            self.log(f"boot script asked for unknown machine {mac}: no boot offered")
            return unknown_script(mac)
        name, spec = record.name, record.spec
        if record.state == progress.INSTALLED and not spec.diskless:
            self.log(f"{name} ({mac}) is installed: booting its disk")
            return local_disk_script(name)
        # A new boot mid-install goes on from where the last one stopped (resume_from).
        token = self.records.new_token(name)
        self.log(f"{name} ({mac}): booting the installer ({record.state}, boot "
                 f"{record.boots + 1})")
        return installer_script(self.url, name, token, diskless=spec.diskless)

    # -- /m/<name>/... ---------------------------------------------------------------------------
    def authorized(self, name: str, token: str | None) -> MachineRecord:
        """The machine ``name`` if ``token`` is its installer's; PermissionDenied otherwise
        (the same answer for a machine that does not exist: a token tells nothing)."""
        record = self.records.get(name)
        if record is None or not token or not record.token_matches(token):
            self.log(f"refused a request for {name!r}: not its token")
            raise PermissionDenied(f"this token is not machine {name!r}'s")
        return record

    def workflow(self, record: MachineRecord) -> dict[str, Any]:
        flow = self.load(record.spec.workflow)
        steps = progress.align(record.steps, flow.ids())
        if record.state in (progress.WAITING, progress.INSTALLED):
            steps = progress.fresh_steps(flow.ids())  # a new install from the beginning
        state = progress.machine_state_after(steps)
        self.records.set_progress(record.name, state, steps)
        spec = record.spec
        image = self.image_facts(spec.image)
        return {
            "machine": {"name": spec.name, "hostname": spec.name, "disk": spec.disk,
                        "diskless": spec.diskless, "ssh_keys": list(spec.ssh_keys),
                        "mac": spec.mac, **_network_fields(record)},
            "image": {"name": image.name, "snapshot": image.snapshot, "size": image.size,
                      "encoding": self.image_encoding},
            "actions": flow.to_json(),
            "resume_from": progress.resume_from(steps),
        }

    def event(self, record: MachineRecord, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise UserError("the body must be a JSON object with 'step' and 'status'")
        step, status = body.get("step"), body.get("status")
        message, lines = body.get("message", ""), body.get("log", [])
        if not isinstance(step, str) or not isinstance(status, str):
            raise UserError("'step' and 'status' must be strings")
        if not isinstance(message, str):
            raise UserError("'message' must be a string")
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            raise UserError("'log' must be a list of strings")
        if record.state == progress.INSTALLED and not record.spec.diskless:
            raise UserError(f"machine {record.name} is installed: `hc machine reinstall "
                            f"{record.name}` to install it again")
        flow = self.load(record.spec.workflow)
        steps = progress.apply_event(progress.align(record.steps, flow.ids()), step, status,
                                     message, time.time())
        state = progress.machine_state_after(steps)
        self.records.set_progress(record.name, state, steps)
        if lines:
            self.records.append_log(record.name, step, lines)
        if status == "failed":
            self.log(f"{record.name}: step {step} failed: {message}")
        return {"state": state, "current": progress.current_step(steps)}

    def done(self, record: MachineRecord) -> dict[str, Any]:
        """The installer says the workflow finished: installed, if every step says ok."""
        flow = self.load(record.spec.workflow)
        steps = progress.align(record.steps, flow.ids())
        if not progress.all_ok(steps):
            pending = [s.id for s in steps if s.status != progress.OK]
            raise UserError(f"machine {record.name} is not done: steps "
                            f"{', '.join(pending)} have not finished ok")
        self.records.set_progress(record.name, progress.INSTALLED, steps)
        self.log(f"{record.name}: installed")
        return {"state": progress.INSTALLED}


def _network_fields(record: MachineRecord) -> dict[str, Any]:
    net = record.network
    return {"fqdn": net.get("fqdn"), "address4": net.get("address4"),
            "prefix4": net.get("prefix4"), "gateway4": net.get("gateway4"),
            "dns": list(net.get("dns", ())), "domain": net.get("domain")}

