"""Turning what the kernel and tools say into the one-line errors users see."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from homecloud.errors import Conflict, HomecloudError, HostError, NotFound, PoolFull
from homecloud.sizes import format_size

_FULL = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_TEXT = "No space left on device"
FULL_HINT = "remove unused images, instances or snapshots, or grow the pool"


def free_bytes(root: Path) -> int:
    try:
        st = os.statvfs(root)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def pool_full(root: Path, action: str) -> PoolFull:
    return PoolFull(f"the pool at {root} is full ({format_size(free_bytes(root))} free): "
                    f"could not {action}; {FULL_HINT}")


def os_failure(exc: OSError, root: Path, action: str, *, missing: str | None = None,
               exists: str | None = None) -> HomecloudError:
    """Map an OSError raised while doing ``action`` ("fork 'a' to 'b'") to a user-facing error.

    ``missing``/``exists`` are the messages for ENOENT/EEXIST when the caller knows what they
    mean; otherwise those become host errors naming the action."""
    code = exc.errno
    if code in _FULL:
        return pool_full(root, action)
    if code == errno.ENOENT and missing:
        return NotFound(missing)
    if code in (errno.EEXIST, errno.ENOTEMPTY) and exists:
        return Conflict(exists)
    if code == errno.EBUSY:
        return Conflict(f"could not {action}: it is in use; stop what uses it and try again")
    if code in (errno.EPERM, errno.EACCES):
        return HostError(f"could not {action}: {exc.strerror}; homecloud's storage needs root")
    return HostError(f"could not {action}: {exc.strerror or exc}")


def tool_failure(stderr: str, root: Path, action: str,
                 error: type[HomecloudError] = HostError) -> HomecloudError:
    """Map a failed tool (cp, tar, btrfs) to an error quoting the last line it printed;
    ``error`` is the class for failures that are not a full pool."""
    if NO_SPACE_TEXT in stderr:
        return pool_full(root, action)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = lines[-1] if lines else "it failed without saying why"
    return error(f"could not {action}: {detail}")
