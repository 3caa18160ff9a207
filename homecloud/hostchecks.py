"""The checks of `hc doctor` that need no agent, each one line with the fix for a failure.

The agent runs them in its report (homecloud/agent/doctor.py, which adds those that need it);
when the agent does not answer, `hc doctor` runs them itself, as the user running it: those
needing root say so. Kept light, as the CLI imports this: what a check needs it imports itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
FORWARDING = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")
# Every check, in the order reports list them; NEEDS_AGENT are skipped without the agent.
CHECK_NAMES = ("systemd", "inotify", "config", "pool", "network", "bridge", "forwarding", "dns",
               "resolved", "peers", "firewall", "other firewalls")
NEEDS_AGENT = ("pool", "network", "bridge", "dns", "resolved", "peers")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | fail | skipped
    detail: str
    fix: str | None = None


class Failed(Exception):
    """A check's failure: what is wrong, and how to fix it."""

    def __init__(self, detail: str, fix: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


class Skipped(Exception):
    """A check that cannot run here, and why."""


def run_check(name: str, check: Callable[[], str]) -> Check:
    from homecloud.errors import HomecloudError

    try:
        return Check(name, "ok", check())
    except Failed as failed:
        return Check(name, "fail", failed.detail, failed.fix)
    except Skipped as skipped:
        return Check(name, "skipped", str(skipped))
    except HomecloudError as exc:
        return Check(name, "fail", exc.message)
    except OSError as exc:
        return Check(name, "fail", f"{type(exc).__name__}: {exc}")


def _needs_root() -> None:
    if os.geteuid() != 0:
        raise Skipped("needs root: run `sudo hc doctor`")


def systemd() -> str:
    comm = (PROC / "1/comm").read_text().strip()
    if comm != "systemd":
        raise Failed(f"PID 1 is {comm}, not systemd", "homecloud needs systemd as PID 1; on "
                     "a machine without it, boot a dev host (`hc-devhost up NAME`)")
    return "PID 1 is systemd"


def inotify(proc_sys: Path = PROC / "sys") -> str:
    from homecloud.inotify_limits import fix_for, read_limits

    readings = read_limits(proc_sys)
    low = [r for r in readings if r.low]
    if low:
        raise Failed(", ".join(f"{r.limit.key} is {r.value}, below {r.limit.minimum}"
                               for r in low) + ": booted containers may never get ready",
                     fix_for(low))
    return ", ".join(f"{r.limit.key} {r.value}" for r in readings)


def _one_line(message: str) -> str:
    """A parser's message (YAML's spans lines, with a caret under the spot) as one line."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip() not in
                    ("", "^"))


def config() -> str:
    from homecloud.config import CONFIG_PATH, load_config
    from homecloud.errors import UserError

    try:
        load_config(CONFIG_PATH)
    except UserError as exc:
        raise Failed(_one_line(exc.message), f"correct {CONFIG_PATH}, then `systemctl restart "
                     "hcd`") from None
    return f"{CONFIG_PATH} is valid" if CONFIG_PATH.exists() else \
        f"no {CONFIG_PATH}: the defaults apply"


def forwarding() -> str:
    off = [key for key in FORWARDING
           if (PROC / "sys" / key).read_text().strip() != "1"]
    if off:
        names = [key.replace("/", ".") for key in off]
        raise Failed(f"forwarding is off: {', '.join(names)}",
                     f"`sysctl -w {' '.join(n + '=1' for n in names)}` (the agent sets it at "
                     "start: something turned it off)")
    return "IPv4 and IPv6 forwarding are on"


def firewall() -> str:
    from homecloud.network.firewall import FAMILY, TABLE, list_table

    _needs_root()
    table = list_table()
    if table is None:
        raise Failed(f"nftables table {FAMILY} {TABLE} is missing",
                     "`systemctl restart hcd` applies it again")
    rules = sum(1 for item in table if "rule" in item)
    return f"table {FAMILY} {TABLE} with {rules} rules"


def other_firewalls(bridge: str) -> str:
    from homecloud.network.audit import forward_blockers, read_ruleset

    _needs_root()
    blockers = forward_blockers(read_ruleset(), bridge)
    if blockers:
        first = blockers[0]
        raise Failed(f"{', '.join(str(b) for b in blockers)} drops forwarded traffic "
                     "(policy drop, as Docker sets): instances cannot reach the network and "
                     "published ports do not answer", first.fix(bridge))
    return "no other firewall drops forwarded traffic"


def _configured_bridge() -> str:
    from homecloud.config import CONFIG_PATH, load_config
    from homecloud.errors import UserError

    try:
        return load_config(CONFIG_PATH).network.bridge
    except UserError:
        raise Skipped("needs the bridge's name from a valid config (see above)") from None


def without_agent() -> list[Check]:
    """The report when the agent does not answer: every check this process can run alone;
    those needing the agent are skipped."""
    local: dict[str, Callable[[], str]] = {
        "systemd": systemd, "inotify": inotify, "config": config, "forwarding": forwarding,
        "firewall": firewall,
        "other firewalls": lambda: other_firewalls(_configured_bridge())}
    checks = []
    for name in CHECK_NAMES:
        if name in NEEDS_AGENT:
            checks.append(Check(name, "skipped", "needs the agent (see above)"))
        else:
            checks.append(run_check(name, local[name]))
    return checks
