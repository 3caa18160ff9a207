"""A VM whose kernel runs ZFS, for the zfs driver's tests on hosts whose kernel cannot.

The guest boots Debian's cloud kernel (the one VM images get) under qemu with a busybox initrd
and takes this host's own file system, read-only over virtiofs, as its root: it runs this
checkout with this venv, so the tests inside are the ones on the host. The ZFS module is built
here, for the guest's kernel, from Debian's zfs-dkms source and that kernel's headers (a build
on the host takes minutes; in an emulated guest, far longer), and cached under CACHE with the
ZFS userland and pyzfs. ZFS is in Debian's contrib section: its packages come through a private
apt list in CACHE, leaving the host's apt sources as they are.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CACHE = Path("/var/cache/homecloud/zfs-vm")
GUEST_SCRIPT = CACHE / "guest-run.sh"
USERLAND = ("zfsutils-linux", "libzfs4linux", "libzpool5linux", "libnvpair3linux",
            "libuutil3linux", "python3-pyzfs")
# Loaded in this order by the initrd: virtio over PCI, then virtiofs.
BOOT_MODULES = ("drivers/virtio/virtio_ring", "drivers/virtio/virtio",
                "drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci_legacy_dev",
                "drivers/virtio/virtio_pci", "fs/fuse/fuse", "fs/fuse/virtiofs")
VIRTIOFSD = Path("/usr/lib/qemu/virtiofsd")
TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static",
         "gcc-12": "gcc-12", "make": "make", "apt-get": "apt"}
# OpenZFS 2.1's modules, each after those it needs.
ZFS_MODULES = ("spl", "zavl", "znvpair", "zcommon", "icp", "zlua", "zunicode", "zzstd", "zfs")
MEMORY_MB = 2048
DONE = "ZFSVM: exit"

INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in /mods/*.ko; do /bin/busybox insmod "$m" || echo "ZFSVM: insmod $m failed"; done
/bin/busybox mount -t virtiofs -o ro hostroot /newroot || echo "ZFSVM: no root"
for d in tmp run root var/tmp; do /bin/busybox mount -t tmpfs tmpfs "/newroot/$d"; done
/bin/busybox mount --move /dev /newroot/dev
/bin/busybox umount /proc /sys
exec /bin/busybox switch_root /newroot /bin/sh {script}
"""

GUEST_RUN = """#!/bin/sh
# Inside the VM: load ZFS, run pytest with the arguments in {args}, power off.
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in {zfs_modules}; do busybox insmod {modules}/$m.ko || echo "ZFSVM: insmod $m failed"; done
export PATH={root}/sbin:{root}/usr/sbin:{root}/usr/bin:$PATH
export LD_LIBRARY_PATH={root}/lib/x86_64-linux-gnu
export PYTHONPATH={root}/usr/lib/python3/dist-packages
export PYTHONDONTWRITEBYTECODE=1 HOME=/root TMPDIR=/tmp
# pyzfs finds its libraries through ldconfig's cache: one that knows them, over the host's.
ldconfig -X -C /tmp/ld.so.cache {root}/lib/x86_64-linux-gnu
mount --bind /tmp/ld.so.cache /etc/ld.so.cache
cd {checkout}
xargs -0 {python} -m pytest -p no:cacheprovider --color=no --basetemp=/tmp/pt < {args} 2>&1
echo "{done} $?"
echo o > /proc/sysrq-trigger
sleep 60
"""


def missing_tools() -> list[str]:
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if not VIRTIOFSD.exists():
        missing.append("qemu-system-common (virtiofsd)")
    return missing


def _run(argv: Sequence[str | Path], cwd: Path | None = None, log: Path | None = None) -> str:
    if log is None:
        return subprocess.run([str(a) for a in argv], check=True, capture_output=True,
                              text=True, cwd=cwd).stdout
    with log.open("ab") as out:
        subprocess.run([str(a) for a in argv], check=True, stdout=out, stderr=out, cwd=cwd)
    return ""


def guest_kernel() -> str:
    """The release of Debian's cloud kernel that VM images install ('6.1.0-57-cloud-amd64')."""
    text = _run(["apt-cache", "depends", "linux-image-cloud-amd64"])
    found = re.search(r"Depends: linux-image-(\S+)", text)
    if found is None:
        raise RuntimeError("apt knows no linux-image-cloud-amd64")
    return found.group(1)


def _contrib_apt() -> list[str]:
    """apt-get options for a private list of Debian's contrib section (the mirror the host's
    apt uses), kept in CACHE."""
    state = CACHE / "apt"
    sources = state / "sources.list"
    if not sources.exists():
        (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        mirror = "http://deb.debian.org/debian"
        for line in _run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)"]
                         ).splitlines():
            uri, _, release = line.partition(" ")
            if release == "bookworm" and "debian-security" not in uri:
                mirror = uri.rstrip("/")
                break
        sources.write_text(f"deb {mirror} bookworm contrib\n")
    options = [f"-oDir::Etc::SourceList={sources}", "-oDir::Etc::SourceParts=/dev/null",
               f"-oDir::State::Lists={state / 'lists'}", f"-oDir::Cache={state / 'cache'}"]
    if not any((state / "lists").glob("*Packages*")):
        _run(["apt-get", "-q", *options, "update"])
    return options


def _download(packages: Sequence[str], into: Path, options: Sequence[str] = ()) -> list[Path]:
    into.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "-q", *options, "download", *packages], cwd=into)
    return sorted(into.glob("*.deb"))


def _extract(debs: Sequence[Path], into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", deb, into])


def ensure_kernel(release: str) -> Path:
    """The guest kernel's package, unpacked: boot/vmlinuz-* and lib/modules/*."""
    root = CACHE / f"kernel-{release}"
    if not (root / "boot" / f"vmlinuz-{release}").exists():
        with tempfile.TemporaryDirectory(dir=CACHE) as work:
            _extract(_download([f"linux-image-{release}"], Path(work)), root)
    return root


def ensure_zfs_modules(release: str, log: Path) -> Path:
    """ZFS's kernel modules for ``release``, built from zfs-dkms once and cached."""
    modules = CACHE / f"modules-{release}"
    if (modules / "zfs.ko").exists():
        return modules
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        work = Path(tmp)
        abi = release.rsplit("-", 2)[0]  # 6.1.0-57
        kbuild = f"linux-kbuild-{abi.split('.')[0]}.{abi.split('.')[1]}"
        debs = _download([f"linux-headers-{release}", f"linux-headers-{abi}-common", kbuild],
                         work / "debs")
        debs += _download(["zfs-dkms"], work / "debs", _contrib_apt())
        root = work / "root"
        _extract(sorted(set(debs)), root)
        src = root / "usr" / "src"
        headers, common = src / f"linux-headers-{release}", src / f"linux-headers-{abi}-common"
        # The headers include the common ones by absolute path; point it into the work dir.
        makefile = headers / "Makefile"
        makefile.write_text(makefile.read_text().replace("/usr/src/", f"{src}/"))
        zfs = next(src.glob("zfs-*"))
        _run(["./configure", "--with-config=kernel", f"--with-linux={common}",
              f"--with-linux-obj={headers}"], cwd=zfs, log=log)
        _run(["make", "-C", "module", f"-j{os.cpu_count() or 1}"], cwd=zfs, log=log)
        staged = work / "modules"
        staged.mkdir()
        for name in ZFS_MODULES:
            shutil.copy2(next(zfs.glob(f"module/**/{name}.ko")), staged / f"{name}.ko")
            # Without debug symbols the modules load in a fraction of the time (zfs.ko: 64 MB).
            _run(["strip", "--strip-debug", staged / f"{name}.ko"])
        staged.rename(modules)
    return modules


def ensure_userland() -> Path:
    """The ZFS commands, libraries and pyzfs, unpacked (the guest finds them by PATH,
    LD_LIBRARY_PATH and PYTHONPATH)."""
    root = CACHE / "userland"
    if not (root / "sbin" / "zfs").exists():
        with tempfile.TemporaryDirectory(dir=CACHE) as work:
            _extract(_download(USERLAND, Path(work), _contrib_apt()), root)
    return root


def ensure_initrd(kernel: Path, release: str) -> Path:
    initrd = CACHE / f"initrd-{release}.gz"
    if initrd.exists():
        return initrd
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        tree = Path(tmp)
        for directory in ("bin", "mods", "proc", "sys", "dev", "newroot"):
            (tree / directory).mkdir()
        shutil.copy2(shutil.which("busybox") or "busybox", tree / "bin" / "busybox")
        source = kernel / "lib" / "modules" / release / "kernel"
        for index, module in enumerate(BOOT_MODULES):
            shutil.copy2(source / f"{module}.ko", tree / "mods" / f"{index}-{Path(module).name}.ko")
        (tree / "init").write_text(INIT.format(script=GUEST_SCRIPT))
        (tree / "init").chmod(0o755)
        listing = subprocess.run(["find", "."], cwd=tree, check=True, capture_output=True)
        archive = subprocess.run(["busybox", "cpio", "-o", "-H", "newc"], cwd=tree,
                                 input=listing.stdout, check=True, capture_output=True).stdout
        partial = initrd.with_suffix(".partial")
        partial.write_bytes(subprocess.run(["gzip", "-1"], input=archive, check=True,
                                           capture_output=True).stdout)
        partial.rename(initrd)
    return initrd


def run_pytest_in_vm(pytest_args: Sequence[str], *, checkout: Path, python: Path,
                     timeout: float, log: Path) -> tuple[int | None, str]:
    """Boot the VM, run ``python -m pytest ARGS`` in ``checkout`` inside it; return pytest's
    exit status (None if it never finished) and everything the console printed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    release = guest_kernel()
    kernel = ensure_kernel(release)
    modules = ensure_zfs_modules(release, log)
    root = ensure_userland()
    initrd = ensure_initrd(kernel, release)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        work = Path(tmp)
        args = work / "pytest-args"
        args.write_bytes(b"\0".join(arg.encode() for arg in pytest_args))
        GUEST_SCRIPT.write_text(GUEST_RUN.format(
            args=args, modules=modules, zfs_modules=" ".join(ZFS_MODULES), root=root,
            checkout=checkout, python=python, done=DONE))
        socket = work / "virtiofs.sock"
        virtiofsd = subprocess.Popen(
            [str(VIRTIOFSD), f"--socket-path={socket}", "-o", "source=/", "-o", "cache=always",
             "-o", "sandbox=chroot"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not socket.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            console = work / "console.log"
            # A VM past the timeout is stopped; the console says how far it got.
            with console.open("wb") as out, contextlib.suppress(subprocess.TimeoutExpired):
                    subprocess.run(
                        ["qemu-system-x86_64", "-M", "pc,accel=tcg", "-m", str(MEMORY_MB),
                         "-smp", "2", "-nographic", "-no-reboot",
                         "-kernel", str(kernel / "boot" / f"vmlinuz-{release}"),
                         "-initrd", str(initrd), "-append", "console=ttyS0 panic=-1 quiet",
                         "-object", f"memory-backend-memfd,id=mem,size={MEMORY_MB}M,share=on",
                         "-numa", "node,memdev=mem",
                         "-chardev", f"socket,id=vfs,path={socket}",
                         "-device", "vhost-user-fs-pci,chardev=vfs,tag=hostroot"],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                        timeout=timeout, check=False)
            text = console.read_text(errors="replace")
        finally:
            virtiofsd.kill()
            virtiofsd.wait()
    with log.open("a") as out:
        out.write(text)
    found = re.search(rf"{DONE} (\d+)", text)
    return (int(found.group(1)) if found else None), text
