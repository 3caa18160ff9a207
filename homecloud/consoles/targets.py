"""What a console opens, decided by the agent when it mints a token: the screen of a VM that
has one (its VNC socket), else the instance's text console on a terminal (a microVM's serial
console), else a shell inside it (a container). The instance's driver says which it has; no
kind is named here."""

from __future__ import annotations

import os

from homecloud.consoles.tokens import ASLEEP, SCREEN, TERMINAL, ConsoleTarget
from homecloud.errors import UserError
from homecloud.instances.drivers.base import Unsupported
from homecloud.instances.manager import InstanceManager

# A login shell: bash where the image has it, else sh.
SHELL = ("/bin/sh", "-c", "if command -v bash >/dev/null; then exec bash -l; fi; exec sh -l")
SHELL_PATHS = ("bin/sh", "usr/bin/sh")


def console_target(manager: InstanceManager, name: str, *, wake: bool = False) -> ConsoleTarget:
    """What ``name``'s console reaches now. A sleeping (``--idle``) instance is not started
    here: its link says ASLEEP and the page's opening wakes it (``wake``: start it first, as
    the proxy asks when that page opens)."""
    instance = manager.instance(name)
    state = manager.get(name).state
    if state not in ("running", "starting"):
        if instance.spec.idle is None:
            raise UserError(f"instance {name} is not running: start it with `hc start {name}`")
        if not wake:
            return ConsoleTarget(ASLEEP, note=f"{name} sleeps: opening its console wakes it")
        manager.start(name)
    driver = manager.driver(instance)
    display = driver.display_socket(instance)
    if display is not None:
        return ConsoleTarget(SCREEN, socket=display)
    try:
        argv = driver.console(instance)
    except Unsupported:
        pass
    else:
        return ConsoleTarget(TERMINAL, argv=tuple(argv),
                             note=f"{name} has no screen: this is its serial console")
    root = getattr(driver, "root", None)
    if root is not None and not any(os.path.lexists(root(instance) / path)
                                    for path in SHELL_PATHS):
        raise UserError(f"instance {name} has no shell (no /bin/sh in its image): there is "
                        "no terminal to open")
    return ConsoleTarget(TERMINAL, argv=tuple(manager.exec_argv(name, list(SHELL))))
