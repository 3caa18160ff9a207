"""The iPXE binaries network boot hands out, as real files in homecloud's own boot directory.

Debian's ipxe package keeps undionly.kpxe under /usr/lib/ipxe but ipxe.efi only as a symlink
into /boot, which a container host (a dev host, say) does not see: served from there, a UEFI
PXE ROM would get "file not found". So hc-dhcp and hc-provision serve copies: each start copies
the package's file, resolved, into the boot directory when it changed (an upgrade of the
package gives it a new size or time), and into a shared cache; where the package's file is not
visible, the cache's copy (written by a run that saw it: the host's bootstrap) serves instead.

Standard library only (and homecloud's pure modules): the bootstrap, which runs before
homecloud's venv exists, fills the cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from homecloud.machines.dnsmasq_conf import BIOS_LOADER, BOOT_DIR, UEFI_LOADER

IPXE_DIR = Path("/usr/lib/ipxe")
# Shared with every dev host on the machine (bound in at the same path).
SHARED_CACHE = Path("/var/cache/homecloud/ipxe")
BOOT_FILES = (BIOS_LOADER, UEFI_LOADER)


@dataclass(frozen=True)
class StagedFile:
    name: str
    origin: Path | None  # the real file the copy came from; None: no copy could be made
    problem: str | None = None


def _readable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def _same(a: Path, b: Path) -> bool:
    """Whether ``b`` is a current copy of ``a``: copies keep the original's size and time."""
    try:
        sa, sb = a.stat(), b.stat()
    except FileNotFoundError:
        return False
    return sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns


def _copy(source: Path, target: Path) -> None:
    """``source`` to ``target`` unless it is current there; readable by all (dnsmasq drops
    root), replaced at once so a machine reading the old file gets it whole."""
    if _same(source, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copy2(source, tmp)
    tmp.chmod(0o644)
    tmp.replace(target)


def stage_file(name: str, boot_dir: Path = BOOT_DIR, package_dir: Path = IPXE_DIR,
               cache_dir: Path | None = SHARED_CACHE) -> StagedFile:
    source = package_dir / name
    real = Path(os.path.realpath(source))
    if _readable_file(real):
        _copy(real, boot_dir / name)
        if cache_dir is not None:
            # A read-only cache (a sandboxed unit) is fine: the boot directory is what serves.
            with contextlib.suppress(OSError):
                _copy(real, cache_dir / name)
        return StagedFile(name, real)
    cached = cache_dir / name if cache_dir is not None else None
    if cached is not None and _readable_file(cached):
        _copy(cached, boot_dir / name)
        return StagedFile(name, cached)
    (boot_dir / name).unlink(missing_ok=True)  # never serve a copy of something now gone
    if source.is_symlink():
        why = (f"{source} points to {real}, which is not visible here (is /boot mounted?); "
               f"run homecloud's bootstrap where it is, or copy it to {cached or boot_dir}")
    else:
        why = f"{source} is missing: apt-get install ipxe"
    return StagedFile(name, None, why)


def stage_boot_files(boot_dir: Path = BOOT_DIR, package_dir: Path = IPXE_DIR,
                     cache_dir: Path | None = SHARED_CACHE) -> list[StagedFile]:
    """Copy each iPXE binary homecloud serves into ``boot_dir``; what was done for each."""
    return [stage_file(name, boot_dir, package_dir, cache_dir) for name in BOOT_FILES]


def fill_shared_cache(package_dir: Path = IPXE_DIR,
                      cache_dir: Path = SHARED_CACHE) -> list[str]:
    """Copy the package's files into the shared cache where they are visible (the machine's
    bootstrap); a run that cannot see them leaves the cache as it is. The names copied."""
    copied = []
    for name in BOOT_FILES:
        real = Path(os.path.realpath(package_dir / name))
        if _readable_file(real):
            _copy(real, cache_dir / name)
            copied.append(name)
    return copied
