"""The `busybox` recipe: a tiny image from the host's static busybox, built in milliseconds.

Made for fast tests: a shell and the usual tools (one symlink per applet), an init, and the few
files a container manager expects (passwd, group, os-release). Nothing instance-specific.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from homecloud.errors import HostError
from homecloud.images.progress import Progress, ProgressCallback
from homecloud.images.recipes.base import BuildOptions, BuildTarget, Recipe
from homecloud.tools import run_tool

BUSYBOX = Path("/bin/busybox")
_PT_INTERP = 3
# Directories of an empty root (mode); mount points and the usual homes.
DIRECTORIES = {
    "bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "etc": 0o755, "dev": 0o755, "proc": 0o555, "sys": 0o555, "run": 0o755, "tmp": 0o1777,
    "root": 0o700, "var": 0o755, "var/tmp": 0o1777,
}
FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hostname": "busybox\n",
}


def is_static_elf(header: bytes) -> bool:
    """Whether a 64-bit little-endian ELF ``header`` (its first few KiB) has no interpreter."""
    if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", header, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
    for index in range(phnum):
        offset = phoff + index * phentsize
        if offset + 4 > len(header):
            return False
        p_type, = struct.unpack_from("<I", header, offset)
        if p_type == _PT_INTERP:
            return False
    return True


def _busybox(*args: str) -> str:
    result = run_tool([str(BUSYBOX), *args], package="busybox-static")
    if not result.ok:
        raise HostError(f"{BUSYBOX} {' '.join(args)} failed: {result.first_error_line()}")
    return result.stdout


def prepare(options: BuildOptions) -> BuildOptions:
    missing = HostError(f"{BUSYBOX} is not a static busybox: apt-get install busybox-static")
    try:
        with open(BUSYBOX, "rb") as file:
            header = file.read(4096)
    except FileNotFoundError:
        raise missing from None
    if not is_static_elf(header):
        raise missing
    return options


def os_release(version: str) -> str:
    return (f'NAME="BusyBox"\nID=busybox\nVERSION_ID="{version}"\n'
            f'PRETTY_NAME="BusyBox {version}"\n')


def fill(target: BuildTarget, _: BuildOptions, progress: ProgressCallback) -> None:
    root = target.root
    # `busybox --list-full` names each applet with its usual directory: bin/sh, usr/bin/env...
    applets = [path for path in _busybox("--list-full").split() if "/" in path]
    version = _busybox().split()[1].lstrip("v")  # "BusyBox v1.35.0 (Debian ...) multi-call"
    total = len(applets) + 1
    progress(Progress("install", 0, total, "installing busybox"))
    for directory, mode in DIRECTORIES.items():
        (root / directory).mkdir()
        os.chmod(root / directory, mode)  # mkdir's mode is filtered by the umask
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in applets:
        link = root / applet
        if not os.path.lexists(link):
            link.symlink_to("/bin/busybox")
    for path, text in {**FILES, "etc/os-release": os_release(version)}.items():
        (root / path).write_text(text)
    progress(Progress("install", total, total, f"installed busybox {version}"))


RECIPE = Recipe(name="busybox", description="a tiny image from the host's static busybox",
                prepare=prepare, fill=fill)
