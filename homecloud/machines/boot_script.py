"""The iPXE scripts homecloud's provisioning server answers ``/boot.ipxe`` with. Pure.

A machine to install boots homecloud's installer with its name and a fresh token on the kernel
command line; an installed one boots its own disk (``exit`` hands over to the next boot
device); a MAC homecloud does not know is told so and is not booted.
"""

from __future__ import annotations

from collections.abc import Sequence

INSTALLER_KERNEL = "vmlinuz"
INSTALLER_INITRD = "initrd.img"
# Time for a user at the machine's console to read why nothing happens.
UNKNOWN_PAUSE = 10


def installer_script(url: str, name: str, token: str, *, diskless: bool = False,
                     extra_args: Sequence[str] = ()) -> str:
    """Boot homecloud's installer for ``name``: it fetches its workflow from ``url``."""
    args = [f"hc.url={url}", f"hc.machine={name}", f"hc.token={token}", "ip=dhcp",
            "console=tty0", "console=ttyS0", *(["hc.diskless=1"] if diskless else []),
            *extra_args]
    for arg in args:
        # Kernel arguments are space-separated and iPXE expands ${...}: neither may appear.
        if any(c.isspace() for c in arg) or "${" in arg:
            raise ValueError(f"kernel argument {arg!r} cannot go into a boot script")
    return "\n".join([
        "#!ipxe",
        f"echo homecloud: {'booting' if diskless else 'installing'} {name}",
        f"kernel {url}/installer/{INSTALLER_KERNEL} initrd={INSTALLER_INITRD} {' '.join(args)}",
        f"initrd {url}/installer/{INSTALLER_INITRD}",
        "boot",
    ]) + "\n"


def local_disk_script(name: str) -> str:
    return f"#!ipxe\necho homecloud: {name} is installed, booting its disk\nexit\n"


def unknown_script(mac: str) -> str:
    return (f"#!ipxe\necho homecloud: unknown machine {mac}: add it with "
            f"`hc machine add NAME --mac {mac} --image IMAGE`\n"
            f"sleep {UNKNOWN_PAUSE}\nexit 1\n")
