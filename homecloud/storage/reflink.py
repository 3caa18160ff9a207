"""The reflink driver: datasets are directories on a file system that clones files by sharing
extents (XFS made with reflink=1, or any other with FICLONE). A fork is one ``cp``."""

from __future__ import annotations

from homecloud.storage.directory import DirectoryDriver


class ReflinkDriver(DirectoryDriver):
    name = "reflink"
    copy_command = ("cp", "-a", "--reflink=always")
