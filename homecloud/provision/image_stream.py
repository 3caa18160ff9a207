"""What the provisioning server sends a machine: its image as a checked, compressed stream.

``write_image_stream``: the image's read-only subvolume as ``btrfs send``, framed as
homecloud.snapshots.framing frames snapshot streams (a length and CRC-32C trailer), then
zstd-compressed; the installer's receive-image.sh takes it into ``btrfs receive``, which checks
the CRC-32C of every command in it, and checks that the trailer follows the stream's end
command. ``write_rootfs``: for diskless machines, the image's tree as a zstd-compressed newc
cpio, which the installer unpacks into RAM. Both write to ``out`` as they go: nothing is held
whole in memory.

Compression pays on a LAN (gigabit carries about 110 MB/s; zstd makes a Debian image about a
third of its size) and costs on homecloud's own bridge, where the machines are VMs of this host
and the bytes never leave its memory: there both streams go uncompressed (``compress=False``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from homecloud.errors import HostError
from homecloud.machines.installer import cpio
from homecloud.snapshots.framing import ChecksumWriter
from homecloud.tools import CHUNK, pipe_tool

# Content-Encoding of both streams when compressed. Level 1 on every core keeps ahead of a
# gigabit link with CPU to spare for other machines installing at the same time; level 3 made a
# 457 MB send stream 14% smaller (148 MB against 173) but took 1.8 times the CPU: 150 MB/s of
# input per core against 270 on a 2-core EPYC, short of what a gigabit link carries.
ENCODING = "zstd"
ZSTD = ["zstd", "-q", "-c", "-1", "-T0"]


def encoding(compress: bool) -> str:
    """The Content-Encoding of the streams (and what the installer is told to undo)."""
    return ENCODING if compress else "identity"


@contextlib.contextmanager
def _compressed(out: BinaryIO, compress: bool = True) -> Iterator[BinaryIO]:
    """A writable stream whose bytes reach ``out`` zstd-compressed (as they are, unless
    ``compress``)."""
    if not compress:
        yield out
        return
    try:
        zstd = subprocess.Popen(ZSTD, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    except FileNotFoundError:
        raise HostError("zstd is not installed on this host: apt-get install zstd") from None
    assert zstd.stdin is not None and zstd.stdout is not None
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            shutil.copyfileobj(zstd.stdout, out, CHUNK)  # type: ignore[arg-type]
        except BaseException as exc:  # the client went away: stop feeding zstd
            failure.append(exc)
            zstd.kill()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield zstd.stdin  # type: ignore[misc]
        zstd.stdin.close()
    finally:
        if not zstd.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                zstd.stdin.close()
        reader.join()
        zstd.wait()
        zstd.stdout.close()
    if failure:
        raise failure[0]


def write_image_stream(subvolume: Path, out: BinaryIO, compress: bool = True) -> None:
    """``btrfs send`` of the read-only ``subvolume`` with its trailer, zstd-compressed unless
    not ``compress``."""
    with _compressed(out, compress) as compressed:
        framed = ChecksumWriter(compressed)
        result = pipe_tool(["btrfs", "send", "-q", str(subvolume)],
                           out=framed)  # type: ignore[arg-type]
        if not result.ok:
            raise HostError(f"btrfs send {subvolume} failed: {result.first_error_line()}")
        framed.finish()


def write_rootfs(tree: Path, out: BinaryIO, compress: bool = True) -> None:
    """The tree as a newc cpio (owners kept), zstd-compressed unless not ``compress``: a
    diskless machine's root."""
    with _compressed(out, compress) as compressed:
        cpio.write_cpio(tree, compressed, keep_owners=True)
