"""The fallback driver: datasets are directories and a fork copies every byte."""

from __future__ import annotations

from homecloud.storage.directory import DirectoryDriver


class CopyDriver(DirectoryDriver):
    name = "copy"
    fast_fork = False
    # Never share extents, even where cp could: this driver promises plain, independent copies.
    copy_command = ("cp", "-a", "--reflink=never")
