"""Host commands for a q35 VM, as ``python -m homecloud.instances.drivers.domainctl VERB NAME
...``:

    exec NAME -- CMD    `hc exec`: CMD through the guest agent of domain hc-NAME, its output
                        and exit status as if it ran here (stdin is passed when it is not a
                        terminal)

libvirt holds a domain's guest agent channel itself, so the commands go through libvirtd; what
is run and how its output comes back is the microVM's (vmctl.exec_through).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from homecloud.errors import HomecloudError
from homecloud.instances.drivers import libvirt_conn
from homecloud.instances.drivers.domainxml import domain_name
from homecloud.instances.drivers.vmctl import exec_through


def run_exec(instance: str, argv: Sequence[str]) -> int:
    conn = libvirt_conn.connect()
    try:
        dom = libvirt_conn.lookup(conn, domain_name(instance))
        if dom is None or not libvirt_conn.is_active(dom):
            print(f"VM {instance} is not running: start it with `hc start {instance}`",
                  file=sys.stderr)
            return 1
        return exec_through(libvirt_conn.DomainAgent(dom, instance), argv)
    finally:
        conn.close()


def main(argv: Sequence[str]) -> int:
    match list(argv):
        case ["exec", instance, "--", *command] if command:
            try:
                return run_exec(instance, command)
            except HomecloudError as exc:
                print(exc.message, file=sys.stderr)
                return 1
    print("usage: domainctl exec NAME -- CMD ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
