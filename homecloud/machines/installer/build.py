"""Build the installer (kernel + initramfs) from Debian's packages and cache it.

The kernel is Debian's (``linux-image-cloud-amd64`` by default: what homecloud's VM images run,
enough for qemu; real hardware needs ``linux-image-amd64``'s NIC and disk drivers). The
initramfs holds busybox (static), the programs the actions run, copied from this host's Debian
packages with the libraries they load, the kernel modules the workflow needs, and the executor
(the shell scripts beside this module). The result is kept under CACHE/<digest>/, the digest
being taken over everything it is made of (this code, the scripts, the kernel package, the
files copied from this host), so a changed input gives a new build and an unchanged one costs
nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from homecloud.errors import HostError
from homecloud.machines.installer import cpio, libraries, modules
from homecloud.tools import require_tool, run_tool

CACHE = Path("/var/lib/homecloud/installer")
DEB_CACHE = Path("/var/cache/homecloud/installer-debs")
APT_ARCHIVES = Path("/var/cache/apt/archives")
KERNEL_PACKAGE = "linux-image-cloud-amd64"
SCRIPTS = Path(__file__).parent / "scripts"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
# The programs the actions run, by the Debian package that ships them on this host (busybox
# gives the rest). The image stream passes through none but zstd and btrfs: receive-image.sh.
PROGRAMS = {
    "btrfs": "btrfs-progs", "mkfs.btrfs": "btrfs-progs", "sfdisk": "fdisk",
    "wipefs": "util-linux", "blkid": "util-linux", "mkfs.vfat": "dosfstools",
    "zstd": "zstd", "jq": "jq", "extlinux": "extlinux",
}
BUSYBOX = ("/bin/busybox", "busybox-static")
# Files the actions read: the MBR code extlinux needs on a GPT disk.
DATA_FILES = {"/usr/lib/EXTLINUX/gptmbr.bin": "extlinux"}
# Modules loaded at start, each after what it needs; a name the kernel builds in (or lacks) is
# skipped. Disks: virtio, NVMe, SATA, SCSI; file systems: btrfs, vfat; NICs: virtio and the
# common Intel and Realtek ones (present in linux-image-amd64, not in the cloud kernel).
MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "nvme", "ahci", "virtio_net",
           "e1000", "e1000e", "igb", "igc", "r8169", "btrfs", "vfat", "nls_cp437",
           "nls_iso8859_1", "nls_ascii", "af_packet")
STEPS = ("kernel", "programs", "modules", "scripts", "archive")

# progress(done, total, message): a build's steps as they start (a bar on a terminal).
InstallerProgress = Callable[[int, int, str], None]


def ignore_progress(done: int, total: int, message: str) -> None:
    """For callers that show no progress."""


class Installer(NamedTuple):
    """The kernel and initrd a machine boots to be installed (or to run diskless)."""

    kernel: Path
    initrd: Path


@dataclass(frozen=True)
class Inputs:
    """What a build is made of; ``digest`` names the cached build."""

    kernel_package: str  # the versioned package, e.g. linux-image-6.1.0-53-cloud-amd64
    kernel_version: str
    host_files: HostFiles
    code_digest: str

    @property
    def digest(self) -> str:
        text = "\n".join([self.kernel_package, self.kernel_version, self.code_digest,
                          self.host_files.digest()])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _code_digest() -> str:
    """Over this package's sources and scripts: a changed recipe is a new installer."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), *SCRIPTS.rglob("*")]):
        if path.is_file():
            digest.update(str(path.relative_to(here)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class HostFiles:
    """What the initramfs copies from this host: programs (by their name in it), the libraries
    they load, and data files."""

    programs: tuple[tuple[str, Path], ...]
    libraries: tuple[Path, ...]
    data: tuple[Path, ...]

    def digest(self) -> str:
        """Over the files' contents: an upgraded package is a new installer (dpkg's records are
        no help where /var is fresh, as in a container sharing the host's /usr)."""
        digest = hashlib.sha256()
        for path in (*(path for _, path in self.programs), *self.libraries, *self.data):
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()


def host_files() -> HostFiles:
    """The files the initramfs takes from this host; HostError naming the package to install
    for one that is missing."""
    programs = [("busybox", Path(require_tool(*BUSYBOX)).resolve())]
    programs += [(name, Path(require_tool(name, package)).resolve())
                 for name, package in PROGRAMS.items()]
    needed: set[Path] = set()
    for _, path in programs[1:]:  # busybox is static
        report = run_tool(["ldd", str(path)], package="libc-bin")
        needed.update(Path(lib) for lib in libraries.ldd_paths(report.stdout))
    for data_file, package in DATA_FILES.items():
        if not Path(data_file).is_file():
            raise HostError(f"{data_file} is missing: apt-get install {package}")
    return HostFiles(tuple(programs), tuple(sorted(needed)),
                     tuple(Path(name) for name in DATA_FILES))


def newest_cached_kernel(file_names: Iterable[str], meta: str) -> tuple[str, str] | None:
    """Of the .deb files named, the newest versioned kernel of ``meta``'s flavour
    (linux-image-cloud-amd64: linux-image-6.1.0-57-cloud-amd64), as (package, version)."""
    flavour = meta.removeprefix("linux-image-")
    pattern = re.compile(
        rf"(linux-image-(\d+(?:\.\d+)*-\d+)-{re.escape(flavour)})_([^_]+)_amd64\.deb")
    found = [(tuple(int(n) for n in re.split(r"[.-]", match.group(2))), match.group(1),
              match.group(3).replace("%3a", ":"))
             for match in map(pattern.fullmatch, file_names) if match]
    if not found:
        return None
    _, package, version = max(found)
    return package, version


def _kernel_package(meta: str) -> tuple[str, str]:
    """The versioned kernel package ``meta`` points to, and its version: apt's candidate, or
    where apt has no lists (a fresh root), the newest one already downloaded."""
    result = run_tool(["apt-cache", "depends", "--important", meta], package="apt")
    found = re.search(r"Depends:\s*(linux-image-\S+)", result.stdout)
    if not result.ok or found is None:
        cached = newest_cached_kernel(
            [path.name for directory in (DEB_CACHE, APT_ARCHIVES) if directory.is_dir()
             for path in directory.iterdir()], meta)
        if cached is not None:
            return cached
        raise HostError(f"apt knows no kernel package {meta!r} ({result.first_error_line()}): "
                        "run apt-get update, or name a linux-image package")
    package = found.group(1)
    policy = run_tool(["apt-cache", "policy", package], package="apt")
    version = re.search(r"Candidate:\s*(\S+)", policy.stdout)
    if version is None or version.group(1) == "(none)":
        raise HostError(f"apt has no version of {package} to download: run apt-get update")
    return package, version.group(1)


def installer_inputs(kernel_package: str = KERNEL_PACKAGE) -> Inputs:
    package, version = _kernel_package(kernel_package)
    return Inputs(package, version, host_files(), _code_digest())


def _kernel_deb(package: str, version: str) -> Path:
    """The kernel's .deb: apt's own cache, ours, or downloaded into ours."""
    name = f"{package}_{version.replace(':', '%3a')}_amd64.deb"
    for directory in (APT_ARCHIVES, DEB_CACHE):
        if (directory / name).is_file():
            return directory / name
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    result = run_tool(["sh", "-c", 'cd "$1" && apt-get download "$2"', "sh", str(DEB_CACHE),
                       f"{package}={version}"], timeout=600, package="apt")
    if not result.ok or not (DEB_CACHE / name).is_file():
        raise HostError(f"downloading {package} {version} failed: {result.first_error_line()}")
    return DEB_CACHE / name


def _copy(source: Path, root: Path) -> None:
    """Copy ``source`` to the same path under ``root``, following links to the file itself."""
    target = root / str(source).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source.resolve(), target)


def _stage_programs(root: Path, files: HostFiles) -> None:
    for name, path in files.programs:
        target = root / ("bin" if name == "busybox" else "usr/bin") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    for library in (*files.libraries, *files.data):
        _copy(library, root)


def _stage_modules(kernel_tree: Path, version: str, root: Path) -> None:
    """The wanted modules and what they need, and the list /init loads them from, in order."""
    found = {modules.module_name(path.name): path
             for path in (kernel_tree / "lib" / "modules" / version).rglob("*.ko")}
    depends = {name: modules.module_depends(path.read_bytes()) for name, path in found.items()}
    order = modules.load_order(MODULES, depends)
    target = root / "lib" / "modules"
    target.mkdir(parents=True)
    for name in order:
        shutil.copy2(found[name], target / f"{name}.ko")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "modules").write_text("".join(f"{name}\n" for name in order))


def _stage_scripts(root: Path, inputs: Inputs) -> None:
    shutil.copytree(SCRIPTS, root / "lib" / "hc")
    (root / "init").symlink_to("lib/hc/init")
    for program in ("init", "dhcp.sh"):  # executed, not sourced (a checkout may lose modes)
        (root / "lib" / "hc" / program).chmod(0o755)
    (root / "etc" / "hc-installer").write_text(
        f"digest={inputs.digest}\nkernel={inputs.kernel_package} {inputs.kernel_version}\n")


def _build(inputs: Inputs, directory: Path, progress: InstallerProgress) -> None:
    def step(index: int, message: str) -> None:
        progress(index, len(STEPS), message)

    step(0, f"unpacking {inputs.kernel_package} {inputs.kernel_version}")
    deb = _kernel_deb(inputs.kernel_package, inputs.kernel_version)
    kernel_tree = directory / "kernel-tree"
    result = run_tool(["dpkg-deb", "-x", str(deb), str(kernel_tree)], package="dpkg")
    if not result.ok:
        raise HostError(f"unpacking {deb} failed: {result.first_error_line()}")
    versions = sorted(p.name for p in (kernel_tree / "lib" / "modules").iterdir())
    if len(versions) != 1:
        raise HostError(f"{deb} holds {len(versions)} module trees; expected one")
    shutil.copy2(kernel_tree / "boot" / f"vmlinuz-{versions[0]}", directory / KERNEL)
    root = directory / "initramfs"
    step(1, "copying busybox and the installer's programs")
    _stage_programs(root, inputs.host_files)
    step(2, "choosing kernel modules")
    _stage_modules(kernel_tree, versions[0], root)
    step(3, "adding the workflow executor")
    _stage_scripts(root, inputs)
    step(4, "packing the initramfs")
    with gzip.open(directory / INITRD, "wb", compresslevel=6) as out:
        cpio.write_cpio(root, out)  # type: ignore[arg-type]
    shutil.rmtree(kernel_tree)
    shutil.rmtree(root)
    progress(len(STEPS), len(STEPS), "installer ready")


def ensure_installer(progress: InstallerProgress = ignore_progress,
                     kernel_package: str = KERNEL_PACKAGE, cache: Path = CACHE) -> Installer:
    """The installer's kernel and initrd, built first if its inputs changed since the last
    build; older builds are removed."""
    inputs = installer_inputs(kernel_package)
    final = cache / inputs.digest
    if not (final / INITRD).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
        try:
            _build(inputs, partial, progress)
            shutil.rmtree(final, ignore_errors=True)
            partial.chmod(0o755)  # mkdtemp made it private; the server reads it
            os.rename(partial, final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    for old in cache.iterdir():
        if old.name != inputs.digest and old.is_dir() and not old.name.startswith(".build-"):
            shutil.rmtree(old, ignore_errors=True)
    return Installer(final / KERNEL, final / INITRD)
