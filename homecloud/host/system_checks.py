"""The checks of `hc doctor` that need no agent: what the host itself has.

The agent runs them in its report; when the agent does not answer, `hc doctor` runs them
itself, as the user running it: those needing root say so. Kept light, as the CLI imports this:
what a check needs it imports itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from homecloud.host.checks import Failed, Skipped, needs_root

PROC = Path("/proc")
FORWARDING = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")


def systemd() -> str:
    comm = (PROC / "1/comm").read_text().strip()
    if comm != "systemd":
        raise Failed(f"PID 1 is {comm}, not systemd", "homecloud needs systemd as PID 1; on "
                     "a machine without it, boot a dev host (`hc-devhost up NAME`)")
    return "PID 1 is systemd"


def inotify(proc_sys: Path = PROC / "sys") -> str:
    from homecloud.host.inotify_limits import fix_for, read_limits

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

    needs_root()
    table = list_table()
    if table is None:
        raise Failed(f"nftables table {FAMILY} {TABLE} is missing",
                     "`systemctl restart hcd` applies it again")
    rules = sum(1 for item in table if "rule" in item)
    return f"table {FAMILY} {TABLE} with {rules} rules"


def other_firewalls(bridge: str) -> str:
    from homecloud.network.audit import forward_blockers, read_ruleset

    needs_root()
    blockers = forward_blockers(read_ruleset(), bridge)
    if blockers:
        first = blockers[0]
        raise Failed(f"{', '.join(str(b) for b in blockers)} drops forwarded traffic "
                     "(policy drop, as Docker sets): instances cannot reach the network and "
                     "published ports do not answer", first.fix(bridge))
    return "no other firewall drops forwarded traffic"


def configured_bridge() -> str:
    from homecloud.config import CONFIG_PATH, load_config
    from homecloud.errors import UserError

    try:
        return load_config(CONFIG_PATH).network.bridge
    except UserError:
        raise Skipped("needs the bridge's name from a valid config (see above)") from None


def checksums(implementation: str | None = None) -> str:
    """Whether google-crc32c runs its C code: without it (no wheel for this processor, built
    without a compiler) it falls back to Python at ~5 MiB/s, and every snapshot send and
    machine image stream crawls. ``implementation``: google_crc32c's own answer, by default."""
    if implementation is None:
        import google_crc32c

        implementation = google_crc32c.implementation
    if implementation != "c":  # google-crc32c names it "python"
        raise Failed(f"google-crc32c runs its {implementation} fallback: snapshot sends and "
                     "machine image streams are checksummed at ~5 MiB/s",
                     "reinstall it from a wheel, which carries the C extension: "
                     f"{sys.prefix}/bin/pip install --force-reinstall --only-binary :all: "
                     "google-crc32c")
    return "CRC-32C of snapshot and image streams runs in C"
