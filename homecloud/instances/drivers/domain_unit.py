"""What hc-NAME.service runs for a q35 VM: it mirrors the libvirt domain, so systemd (and
`hc ls`, the reconcile pass, `--restart always`) sees the VM as it sees any instance.

    start      start the domain (or adopt it when it already runs), wait until the guest is
               ready, tell systemd READY=1
    run        stay active while the domain runs (libvirt lifecycle events); exit when it
               stops: 0 after a poweroff, 1 after a crash, DESTROYED when it was destroyed
               (`hc rm -f`, `virsh destroy`): the unit is not restarted then
    SIGTERM    press the power button (ACPI), wait, pull the plug after the stop timeout

The domain itself runs under libvirtd, not in this unit: killing this process or the agent
stops no VM.

    python -m homecloud.instances.drivers.domain_unit NAME --ready port|agent|running
           [--stop-timeout S] [--console-log PATH]
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from homecloud.errors import HomecloudError
from homecloud.images.vmimage import READY_PORT
from homecloud.instances.drivers import libvirt_conn
from homecloud.instances.drivers.domainxml import channel_path, domain_name
from homecloud.systemd.activation import notify

READY_MODES = ("port", "agent", "running")
READY_LINE = b"READY=1"
CHECK_EVERY = 5.0  # seconds: a missed event (libvirtd restarting) is noticed this late
# The exit status after the domain was destroyed from outside: the unit's
# RestartPreventExitStatus, so `--restart always` does not bring back a VM being removed.
DESTROYED = 3


class DomainUnit:
    def __init__(self, instance: str, ready: str, stop_timeout: float,
                 console_log: Path | None) -> None:
        self.instance = instance
        self.name = domain_name(instance)
        self.ready = ready
        self.stop_timeout = stop_timeout
        self.console_log = console_log
        self.stopping = threading.Event()  # SIGTERM
        self.stopped = threading.Event()  # the domain stopped
        self.crashed = False
        self.ready_sent = False
        self.lv = libvirt_conn.libvirt_module()
        self.lv.virEventRegisterDefaultImpl()
        self.conn = libvirt_conn.connect()
        dom = libvirt_conn.lookup(self.conn, self.name)
        if dom is None:
            raise HomecloudError(f"no libvirt domain {self.name}: remove the instance with "
                                 f"`hc rm -f {instance}` and create it again")
        self.dom = dom

    # -- libvirt events ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self.lv.virEventRunDefaultImpl()

    def _on_lifecycle(self, _conn: Any, _dom: Any, event: int, detail: int, _opaque: Any) -> None:
        if event == self.lv.VIR_DOMAIN_EVENT_STOPPED:
            self.crashed = detail in (self.lv.VIR_DOMAIN_EVENT_STOPPED_CRASHED,
                                      self.lv.VIR_DOMAIN_EVENT_STOPPED_FAILED)
            self.stopped.set()

    def _watch(self) -> None:
        threading.Thread(target=self._loop, name="libvirt-events", daemon=True).start()
        self.conn.domainEventRegisterAny(self.dom, self.lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                         self._on_lifecycle, None)

    # -- readiness -----------------------------------------------------------------------------
    def _wait_ready_port(self) -> None:
        path = channel_path(self.dom.XMLDesc(0), READY_PORT)
        if path is None:
            raise HomecloudError(f"domain {self.name} has no {READY_PORT} channel")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.settimeout(1.0)
            seen = b""
            while not self._ended():
                try:
                    chunk = sock.recv(256)
                except TimeoutError:
                    continue
                if not chunk:
                    return  # the domain went away: run() sees it stopped
                seen = (seen + chunk)[-64:]
                if READY_LINE in seen:
                    return

    def _wait_ready_agent(self) -> None:
        while not self._ended() and not libvirt_conn.agent_answers(self.dom):
            time.sleep(0.5)

    def _ended(self) -> bool:
        return self.stopping.is_set() or self.stopped.is_set()

    # -- the unit's life -------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self._watch()
        adopted = libvirt_conn.is_active(self.dom)
        if not adopted:
            try:
                self.dom.create()
            except self.lv.libvirtError as exc:
                print(f"libvirt cannot start domain {self.name}: {exc}", file=sys.stderr)
                return 1
        if not adopted and self.ready == "port":
            self._wait_ready_port()
        elif not adopted and self.ready == "agent":
            self._wait_ready_agent()
        if not self._ended():
            notify(READY="1", STATUS=f"domain {self.name} is running")
            self.ready_sent = True
        while not self._ended():
            self.stopping.wait(CHECK_EVERY)
            if not libvirt_conn.is_active(self.dom):
                self.stopped.set()
        if self.stopping.is_set():
            self._shut_down()
            return 0
        if libvirt_conn.was_destroyed(self.dom):
            print(f"domain {self.name} was destroyed", file=sys.stderr)
            return DESTROYED
        print(f"domain {self.name} {'crashed' if self.crashed else 'powered off'}",
              file=sys.stderr)
        return 1 if self.crashed else 0

    def _shut_down(self) -> None:
        notify(STOPPING="1")
        if not self.ready_sent:  # stopped while starting (its timeout): say how far it got
            self._print_console_tail()
        libvirt_conn.shut_down(self.dom, self.stop_timeout)

    def _print_console_tail(self, lines: int = 10) -> None:
        """The console's last lines, for a start that timed out (they reach the user)."""
        if self.console_log is None:
            return
        try:
            with self.console_log.open(errors="replace") as log:
                tail = deque(log, maxlen=lines)
        except OSError:
            return
        for line in tail:
            print(f"console: {line.rstrip()}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="domain_unit")
    parser.add_argument("instance")
    parser.add_argument("--ready", choices=READY_MODES, default="running")
    parser.add_argument("--stop-timeout", type=float, default=30.0)
    parser.add_argument("--console-log", type=Path)
    args = parser.parse_args(argv)
    try:
        return DomainUnit(args.instance, args.ready, args.stop_timeout, args.console_log).run()
    except HomecloudError as exc:
        print(exc.message, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
