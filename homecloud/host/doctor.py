"""`hc doctor`'s checks, in the order reports list them, and the two ways to run them: in the
agent (GET /v1/doctor) and, when the agent does not answer, in `hc` itself.

Checks: systemd is PID 1, the inotify limits, the config file, the pool, the network
configuration, the bridge, IP forwarding, hc-dns answering, systemd-resolved asking it for our
names (where resolved runs), routes to peer hosts, homecloud's firewall table, other firewalls
dropping forwarded traffic (Docker's FORWARD policy), qemu and KVM for VMs, and the streams'
checksum running in C. Kept light, as the CLI imports it: the checks import what they need
themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from homecloud.host import agent_checks, system_checks, vm_checks
from homecloud.host.agent_checks import RunningAgent
from homecloud.host.checks import Check, run_check


@dataclass(frozen=True)
class DoctorCheck:
    name: str
    # How it runs without the agent; None: it needs the agent, and is skipped without it.
    alone: Callable[[], str] | None = None
    # How the agent runs it, when not as ``alone``.
    in_agent: Callable[[RunningAgent], str] | None = None
    # In the agent: skipped while the network is not set up (the "network" check says why).
    needs_network: bool = False


DOCTOR_CHECKS = (
    DoctorCheck("systemd", alone=system_checks.systemd),
    DoctorCheck("inotify", alone=system_checks.inotify),
    DoctorCheck("config", alone=system_checks.config),
    DoctorCheck("pool", in_agent=agent_checks.pool),
    DoctorCheck("network", in_agent=agent_checks.network),
    DoctorCheck("bridge", in_agent=agent_checks.bridge, needs_network=True),
    DoctorCheck("forwarding", alone=system_checks.forwarding, needs_network=True),
    DoctorCheck("dns", in_agent=agent_checks.dns, needs_network=True),
    DoctorCheck("resolved", in_agent=agent_checks.resolved, needs_network=True),
    DoctorCheck("peers", in_agent=agent_checks.peers, needs_network=True),
    DoctorCheck("firewall", alone=system_checks.firewall, needs_network=True),
    DoctorCheck("other firewalls",
                alone=lambda: system_checks.other_firewalls(system_checks.configured_bridge()),
                in_agent=lambda agent: system_checks.other_firewalls(agent.network.plan.bridge),
                needs_network=True),
    DoctorCheck("kvm", alone=vm_checks.kvm),
    DoctorCheck("checksums", alone=system_checks.checksums),
)
CHECK_NAMES = tuple(check.name for check in DOCTOR_CHECKS)
NEEDS_AGENT = tuple(check.name for check in DOCTOR_CHECKS if check.alone is None)


def in_agent(agent: RunningAgent) -> list[Check]:
    """The agent's report: every check."""
    checks = []
    for check in DOCTOR_CHECKS:
        if check.needs_network and agent.network.error is not None:
            checks.append(Check(check.name, "skipped", "no network (see above)"))
        elif check.in_agent is not None:
            checks.append(run_check(check.name, partial(check.in_agent, agent)))
        else:
            assert check.alone is not None
            checks.append(run_check(check.name, check.alone))
    return checks


def without_agent() -> list[Check]:
    """The report when the agent does not answer: every check this process can run alone;
    those needing the agent are skipped."""
    return [Check(check.name, "skipped", "needs the agent (see above)") if check.alone is None
            else run_check(check.name, check.alone) for check in DOCTOR_CHECKS]
