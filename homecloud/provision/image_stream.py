"""What the provisioning server sends a machine: its image as a checksummed, compressed stream.

``write_image_stream``: the image's read-only subvolume as ``btrfs send``, framed as
homecloud.snapshots.framing frames snapshot streams (SHA-256 trailer), zstd-compressed; the
installer's stream-image action checks the trailer before the root is made. ``write_rootfs``:
for diskless machines, the image's tree as a zstd-compressed newc cpio, which the installer
unpacks into RAM. Both write to ``out`` as they go: nothing is held whole in memory.
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
from homecloud.snapshots.framing import DigestWriter
from homecloud.tools import CHUNK, pipe_tool

# Content-Encoding of both streams; level 3 keeps zstd ahead of a gigabit link on one core.
ENCODING = "zstd"
ZSTD = ["zstd", "-q", "-c", "-3", "-T0"]


@contextlib.contextmanager
def _compressed(out: BinaryIO) -> Iterator[BinaryIO]:
    """A writable stream whose bytes reach ``out`` zstd-compressed."""
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


def write_image_stream(subvolume: Path, out: BinaryIO) -> None:
    """``btrfs send`` of the read-only ``subvolume``, with its SHA-256, zstd-compressed."""
    with _compressed(out) as compressed:
        framed = DigestWriter(compressed)
        result = pipe_tool(["btrfs", "send", "-q", str(subvolume)], out=framed)  # type: ignore[arg-type]
        if not result.ok:
            raise HostError(f"btrfs send {subvolume} failed: {result.first_error_line()}")
        framed.finish()


def write_rootfs(tree: Path, out: BinaryIO) -> None:
    """The tree as a newc cpio (owners kept), zstd-compressed: a diskless machine's root."""
    with _compressed(out) as compressed:
        cpio.write_cpio(tree, compressed, keep_owners=True)
