"""The `debian` recipe: a minimal Debian with systemd, by debootstrap.

``debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2 RELEASE DIR MIRROR``
from the mirror apt already uses. Downloaded .debs are kept in a cache directory so a rebuild
downloads nothing new. The finished tree is made generic: apt's lists and caches go, and what
debootstrap copied from the host or generated for one machine (hostname, resolv.conf,
machine-id) is removed; instance identity is written later, when an instance is created.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from homecloud.errors import HostError, UserError
from homecloud.images.mirror import find_debian_mirror
from homecloud.images.mounts import unmount_below
from homecloud.images.progress import Progress, ProgressCallback
from homecloud.images.publish import out_of_space
from homecloud.images.recipes.base import BuildOptions, BuildTarget, Recipe
from homecloud.images.recipes.debootstrap_progress import EXPECTED_PACKAGES, DebootstrapProgress
from homecloud.images.tools import mentions_full_disk
from homecloud.tools import follow_tool, require_tool

DEFAULT_RELEASE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "iproute2")
CACHE_DIR = Path("/var/cache/homecloud/debootstrap")
SCRIPTS_DIR = Path("/usr/share/debootstrap/scripts")
_RELEASE_RE = re.compile(r"[a-z][a-z0-9.-]*")
_MIRROR_SCHEMES = ("http://", "https://", "file:/")
LOG_LINES = 10  # lines of debootstrap.log quoted when it fails

# Emptied (machine-id: empty means "not set yet") or removed: they belong to one machine.
EMPTIED = ("etc/machine-id",)
REMOVED = ("etc/hostname", "etc/resolv.conf", "var/lib/dbus/machine-id")
# Directories whose contents are caches apt rebuilds (`apt update`); the directories stay.
CACHES = ("var/lib/apt/lists", "var/cache/apt")


def check_release(release: str, scripts: Path = SCRIPTS_DIR) -> str:
    if not _RELEASE_RE.fullmatch(release) or not (scripts / release).exists():
        raise UserError(f"debootstrap does not know the release {release!r}: use a Debian "
                        "codename such as bookworm or trixie")
    return release


def check_mirror(mirror: str) -> str:
    if not mirror.startswith(_MIRROR_SCHEMES):
        raise UserError(f"mirror {mirror!r} is not an http://, https:// or file:/ URL")
    return mirror.rstrip("/")


def prepare(options: BuildOptions) -> BuildOptions:
    require_tool("debootstrap", "debootstrap")
    release = check_release(options.release or DEFAULT_RELEASE)
    mirror = check_mirror(options.mirror or find_debian_mirror(release))
    return BuildOptions(release=release, mirror=mirror)


def debootstrap_command(root: Path, release: str, mirror: str, cache_dir: Path = CACHE_DIR,
                        packages: tuple[str, ...] = PACKAGES) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
            f"--cache-dir={cache_dir}", release, str(root), mirror]


def _log_tail(root: Path) -> list[str]:
    try:
        lines = (root / "debootstrap" / "debootstrap.log").read_text(errors="replace")
    except OSError:
        return []
    return [line for line in lines.splitlines() if line.strip()][-LOG_LINES:]


def _empty_directory(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            _empty_directory(entry)  # keep the directory (apt expects lists/partial to exist)
        elif entry.name != "lock":
            entry.unlink()


def make_generic(root: Path) -> None:
    """Remove caches and the traces of the build host and of one machine from a fresh tree."""
    for cache in CACHES:
        if (root / cache).is_dir():
            _empty_directory(root / cache)
    for path in REMOVED:
        (root / path).unlink(missing_ok=True)
    for path in EMPTIED:
        if (root / path).exists():
            (root / path).write_text("")


def install_tree(root: Path, options: BuildOptions, progress: ProgressCallback, *,
                 packages: tuple[str, ...] = PACKAGES, expected_packages: int = EXPECTED_PACKAGES,
                 cache_dir: Path = CACHE_DIR) -> None:
    """debootstrap ``packages`` into the empty directory ``root`` and make the tree generic."""
    assert options.release and options.mirror, "prepare() completes the options"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tracker = DebootstrapProgress(expected_packages=expected_packages)
    progress(Progress("prepare", 0, tracker.total,
                      f"debootstrap {options.release} from {options.mirror}"))

    def on_line(line: str) -> None:
        report = tracker.feed(line)
        if report is not None:
            progress(report)

    # LC_ALL=C: the host's locale does not exist in the new tree; perl would warn at each step.
    env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = follow_tool(debootstrap_command(root, options.release, options.mirror, cache_dir,
                                                 packages), on_line, env=env)
    finally:
        unmount_below(root)  # a stopped debootstrap can leave /proc and /sys mounted inside
    if result.returncode != 0:
        log = _log_tail(root)
        if mentions_full_disk(result.tail + log):
            raise out_of_space("debootstrap")
        reason = tracker.errors[-1] if tracker.errors else (
            result.tail[-1] if result.tail else f"exit status {result.returncode}")
        details = "".join(f"\n  {line}" for line in log)
        raise HostError(f"debootstrap {options.release} from {options.mirror} failed: "
                        f"{reason}" + (f"; the end of debootstrap.log:{details}" if details
                                       else ""))
    progress(Progress("clean", tracker.total, tracker.total, "removing caches"))
    make_generic(root)
    shutil.rmtree(root / "debootstrap", ignore_errors=True)  # kept only when debootstrap fails


def fill(target: BuildTarget, options: BuildOptions, progress: ProgressCallback) -> None:
    install_tree(target.root, options, progress)


RECIPE = Recipe(name="debian", description="Debian (minbase + systemd) by debootstrap",
                prepare=prepare, fill=fill, takes=frozenset({"release", "mirror"}))
