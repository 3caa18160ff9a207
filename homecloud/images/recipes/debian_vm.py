"""The `debian` recipe's VM variant (`hc image build debian --vm`): a Debian that boots as a VM.

The debian recipe's debootstrap (same mirror, same package cache) with Debian's cloud kernel,
initramfs-tools, udev, qemu-guest-agent, openssh-server and systemd-boot's EFI binary (and
cloud-init with --cloud-init), set up as homecloud.images.vmguest says. The tree is staged
inside the partial dataset, then becomes, without mounting anything, the layout of
homecloud.images.vmimage: the root ext4 file system on the dataset's block volume, the kernel
and initrd for direct boot, and a GPT disk whose EFI system partition boots the same kernel
through systemd-boot.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from homecloud.errors import HostError
from homecloud.images.progress import Progress, ProgressCallback
from homecloud.images.recipes import debian
from homecloud.images.recipes.base import BuildOptions, BuildTarget, Recipe
from homecloud.images.vmdisk import make_esp_disk, make_ext4
from homecloud.images.vmguest import CMDLINE, ENABLED_UNITS, FILES, SSH_HOST_KEYS_GLOB
from homecloud.images.vmimage import (
    ESP,
    INITRD,
    KERNEL,
    READY_PORT,
    ROOT_LABEL,
    VmImage,
    write_vm_image,
)
from homecloud.tools import require_tool, run_tool

PACKAGES = (*debian.PACKAGES, "linux-image-cloud-amd64", "initramfs-tools", "udev",
            "qemu-guest-agent", "openssh-server", "systemd-boot-efi")
# debootstrap does not resolve virtual packages: python3-cryptography (for cloud-init) needs
# python3-cffi-backend-api-*, which only python3-cffi-backend provides.
CLOUD_INIT_PACKAGES = ("cloud-init", "python3-cffi-backend")
# bookworm, PACKAGES: 152 packages (measured); only the progress bar's first estimate.
EXPECTED_PACKAGES = 152
VOLUME_SIZE = 2 << 30  # the root file system; a VM's fork grows with --disk
BOOTLOADER = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
STAGING = "rootfs"  # the tree, inside the partial dataset until it is on the volume
ESP_STAGING = "esp"  # systemd-boot's configuration, likewise
# Steps after debootstrap, each one unit of the bar's last part.
STEPS = ("configure", "kernel", "filesystem", "esp", "describe")
DEBOOTSTRAP_SHARE = 0.9  # of the bar: debootstrap is nearly all of the time
BAR = 1000
# The system locale: one built into libc. Without it cloud-init sets Debian's default,
# en_US.UTF-8, which needs locale-gen from `locales`, a package minbase lacks.
LOCALE_FILE = ("etc/default/locale", "LANG=C.UTF-8\n")


def prepare(options: BuildOptions) -> BuildOptions:
    for program, package in (("mkfs.ext4", "e2fsprogs"), ("sfdisk", "fdisk"),
                             ("mkfs.vfat", "dosfstools"), ("mcopy", "mtools"),
                             ("systemctl", "systemd")):
        require_tool(program, package)
    completed = debian.prepare(BuildOptions(release=options.release, mirror=options.mirror))
    return BuildOptions(release=completed.release, mirror=completed.mirror,
                        cloud_init=options.cloud_init)


def _scaled(progress: ProgressCallback) -> ProgressCallback:
    """debootstrap's progress as the first DEBOOTSTRAP_SHARE of the whole bar."""
    def report(step: Progress) -> None:
        done = int(BAR * DEBOOTSTRAP_SHARE * step.done / step.total) if step.total else 0
        progress(Progress(step.phase, done, BAR, step.message))
    return report


def _step(progress: ProgressCallback, index: int, message: str) -> None:
    start = BAR * DEBOOTSTRAP_SHARE
    done = int(start + (BAR - start) * index / len(STEPS))
    progress(Progress(STEPS[index], done, BAR, message))


def configure_guest(root: Path) -> None:
    """Write homecloud's guest files into the tree and enable its units."""
    for path, text in (*FILES.items(), LOCALE_FILE):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    for key in root.glob(SSH_HOST_KEYS_GLOB):
        key.unlink()
    result = run_tool(["systemctl", f"--root={root}", "enable", "--quiet", *ENABLED_UNITS],
                      package="systemd")
    if not result.ok:
        raise HostError(f"enabling {', '.join(ENABLED_UNITS)} in the image failed: "
                        f"{result.first_error_line()}")


def boot_files(root: Path) -> tuple[Path, Path]:
    """The kernel and initrd the tree's /vmlinuz and /initrd.img links point to."""
    found = []
    for link in ("vmlinuz", "initrd.img"):
        target = root / link
        if not target.is_symlink():
            raise HostError(f"the image has no /{link}: the kernel package did not install")
        found.append(root / os.readlink(target).lstrip("/"))
    return found[0], found[1]


def loader_files(directory: Path, cmdline: str) -> dict[str, Path]:
    """systemd-boot's configuration: boot the one entry at once."""
    directory.mkdir()
    (directory / "loader.conf").write_text("default homecloud.conf\ntimeout 0\n")
    (directory / "homecloud.conf").write_text(
        f"title homecloud\nlinux /vmlinuz\ninitrd /initrd.img\noptions {cmdline}\n")
    return {"loader/loader.conf": directory / "loader.conf",
            "loader/entries/homecloud.conf": directory / "homecloud.conf"}


def fill(target: BuildTarget, options: BuildOptions, progress: ProgressCallback) -> None:
    assert target.volume is not None, "the recipe declares a volume"
    staging = target.root / STAGING
    staging.mkdir()
    packages = PACKAGES + (CLOUD_INIT_PACKAGES if options.cloud_init else ())
    debian.install_tree(staging, options, _scaled(progress), packages=packages,
                        expected_packages=EXPECTED_PACKAGES)
    _step(progress, 0, "setting up the guest")
    configure_guest(staging)
    _step(progress, 1, "copying the kernel and initrd")
    kernel, initrd = boot_files(staging)
    (target.root / KERNEL).parent.mkdir()
    shutil.copy2(kernel, target.root / KERNEL)
    shutil.copy2(initrd, target.root / INITRD)
    _step(progress, 2, "making the root file system")
    make_ext4(target.volume, staging, ROOT_LABEL)
    _step(progress, 3, "making the EFI system partition")
    esp_files = {"EFI/BOOT/BOOTX64.EFI": staging / BOOTLOADER,
                 "vmlinuz": target.root / KERNEL, "initrd.img": target.root / INITRD,
                 **loader_files(target.root / ESP_STAGING, CMDLINE)}
    make_esp_disk(target.root / ESP, esp_files)
    _step(progress, 4, "describing the image")
    shutil.rmtree(staging)
    shutil.rmtree(target.root / ESP_STAGING)
    write_vm_image(target.root, VmImage(
        layout="homecloud", cmdline=CMDLINE, ready_port=READY_PORT, guest_agent=True,
        cloud_init=bool(options.cloud_init), machines=("microvm", "q35"),
        firmware=("direct", "uefi"),
        extra={"release": options.release, "kernel": kernel.name.removeprefix("vmlinuz-")}))
    progress(Progress("done", BAR, BAR, "built"))


RECIPE = Recipe(name="debian", description="Debian for VMs: cloud kernel, systemd, ssh",
                prepare=prepare, fill=fill, takes=frozenset({"release", "mirror", "cloud_init"}),
                volume_size=VOLUME_SIZE)
