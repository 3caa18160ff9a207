"""The fallback driver: datasets are directories and a fork copies every byte."""

from __future__ import annotations

from homecloud.storage.base import Capabilities
from homecloud.storage.directory import DirectoryDriver


class CopyDriver(DirectoryDriver):
    name = "copy"
    capabilities = Capabilities(fast_fork=False, send_receive=True, incremental_send=False,
                                block_volumes=True, enforced_readonly=False)
    # Never share extents, even where cp could: this driver promises plain, independent copies.
    # cp keeps holes (--sparse=auto), so a forked volume stays sparse.
    copy_command = ("cp", "-a", "--reflink=never")
