"""Named network namespaces (/run/netns/NAME), made and removed as `ip netns add|delete` does,
without a subprocess: a short-lived thread unshares its network namespace and the namespace is
bind-mounted at the name, which keeps it alive after the thread is gone. ``in_netns`` runs a
function (opening a socket, say: it stays in the namespace it was made in) the same way.

unshare(CLONE_NEWNET) and setns() only change the calling thread, so the agent's other threads
are not affected; a thread of its own (never a pool worker, which would be reused) does it.
Forking a helper instead, as pyroute2 does for a namespace, costs ~10 ms each time.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from homecloud.errors import HostError

NETNS_DIR = Path("/run/netns")
PROC_SYS = Path("/proc/sys")
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
T = TypeVar("T")


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _share(directory: Path) -> None:
    """Make ``directory`` a shared mount point, as iproute2 does, so a namespace mounted in it
    is seen by mount namespaces made later (`ip netns` relies on this)."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    libc = _libc()
    path = bytes(directory)
    if libc.mount(b"none", path, None, MS_SHARED | MS_REC, None) == 0:
        return
    _check(libc.mount(path, path, b"none", MS_BIND | MS_REC, None), f"bind {directory}")
    _check(libc.mount(b"none", path, None, MS_SHARED | MS_REC, None), f"share {directory}")


def _is_mounted(path: Path) -> bool:
    """Whether a namespace is bound at ``path`` (it is then on nsfs, not on the directory's
    file system)."""
    try:
        return path.stat().st_dev != path.parent.stat().st_dev
    except FileNotFoundError:
        return False


def _in_own_thread(work: Callable[[], T], name: str) -> T:
    """``work()`` in a new thread, whose namespaces it may change; its result or its error."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def in_netns(name: str, work: Callable[[], T], directory: Path = NETNS_DIR) -> T:
    """``work()`` run in the network namespace ``name``; OSError if there is none."""
    def joined() -> T:
        fd = os.open(directory / name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc().setns(fd, CLONE_NEWNET), f"join netns {name}")
        finally:
            os.close(fd)
        return work()

    return _in_own_thread(joined, f"netns-{name}")


def netns_path(name: str, directory: Path = NETNS_DIR) -> Path:
    return directory / name


def netns_exists(name: str, directory: Path = NETNS_DIR) -> bool:
    return _is_mounted(directory / name)


def create_netns(name: str, directory: Path = NETNS_DIR,
                 sysctls: Mapping[str, str] | None = None) -> bool:
    """Make the namespace ``name`` (loopback down, nothing else in it); False if it exists.
    ``sysctls`` (``net/ipv4/...`` -> value) are set in it as it is made: /proc/sys/net
    belongs to the network namespace of the thread that opens it."""
    path = directory / name
    if _is_mounted(path):
        return False
    try:
        _share(directory)
        # Not O_EXCL: an empty file left by an interrupted attempt is mounted over.
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0))
    except OSError as exc:
        raise HostError(f"cannot create network namespace {name}: {exc.strerror or exc}") \
            from None

    def unshare_and_bind() -> None:
        libc = _libc()
        _check(libc.unshare(CLONE_NEWNET), "unshare")
        for key, value in (sysctls or {}).items():
            (PROC_SYS / key).write_text(f"{value}\n")
        _check(libc.mount(b"/proc/thread-self/ns/net", bytes(path), b"none", MS_BIND, None),
               f"bind {path}")

    try:
        _in_own_thread(unshare_and_bind, f"netns-{name}")
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise HostError(f"cannot create network namespace {name}: {exc.strerror or exc}") \
            from None
    return True


def delete_netns(name: str, directory: Path = NETNS_DIR) -> bool:
    """Unmount and remove the namespace ``name`` (the kernel frees it once no process is in it);
    False if there was none."""
    path = directory / name
    mounted = _is_mounted(path)
    if mounted and _libc().umount2(bytes(path), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise HostError(f"cannot remove network namespace {name}: {os.strerror(code)}")
    try:
        path.unlink()
    except FileNotFoundError:
        return mounted
    return True


def list_netns(prefix: str = "", directory: Path = NETNS_DIR) -> list[str]:
    """The names under ``directory`` starting with ``prefix`` (empty files left by an
    interrupted creation included: they are ours to clean)."""
    try:
        return sorted(p.name for p in directory.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []
