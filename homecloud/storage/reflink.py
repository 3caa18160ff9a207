"""The reflink driver: datasets are directories on a file system that clones files by sharing
extents (XFS made with reflink=1, or any other with FICLONE). A fork is one ``cp``."""

from __future__ import annotations

from homecloud.storage.base import Capabilities
from homecloud.storage.directory import DirectoryDriver


class ReflinkDriver(DirectoryDriver):
    name = "reflink"
    capabilities = Capabilities(fast_fork=True, send_receive=True, incremental_send=False,
                                block_volumes=True, enforced_readonly=False)
    copy_command = ("cp", "-a", "--reflink=always")
