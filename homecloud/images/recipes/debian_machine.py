"""The `debian` recipe's bare-metal variant (`hc image build debian --machine`): a Debian that
homecloud's installer puts on a machine's disk, or runs from RAM on a diskless one.

The VM variant's packages (Debian's cloud kernel, initramfs-tools, udev, openssh-server,
systemd-boot's EFI binary) and guest set-up, left as a tree: the image dataset is the root file
system itself, which the provisioning server sends with ``btrfs send`` (or as a cpio for a
diskless machine). The installer writes fstab, the bootloader and the machine's identity.
"""

from __future__ import annotations

from pathlib import Path

from homecloud.images.progress import Progress, ProgressCallback
from homecloud.images.recipes import debian, debian_vm
from homecloud.images.recipes.base import BuildOptions, BuildTarget, Recipe

DPKG_EXCLUDE = "etc/dpkg/dpkg.cfg.d/homecloud-machine"
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")


def prepare(options: BuildOptions) -> BuildOptions:
    return debian.prepare(BuildOptions(release=options.release, mirror=options.mirror))


def fill(target: BuildTarget, options: BuildOptions, progress: ProgressCallback) -> None:
    debian.install_tree(target.root, options, progress, packages=debian_vm.PACKAGES,
                        expected_packages=debian_vm.EXPECTED_PACKAGES)
    progress(Progress("configure", 1, 1, "setting up the machine's services"))
    debian_vm.configure_guest(target.root)
    slim(target.root)
    # The root is found by UUID on the machine: the VM's fstab line (an ext4 label) goes.
    (target.root / "etc" / "fstab").write_text("")
    progress(Progress("done", 1, 1, "built"))


def slim(root: Path) -> None:
    """Drop what a machine never reads (documentation, manual pages, translations: a fifth of
    the tree, every byte of which the installer streams) and tell dpkg to leave it out of
    later installs too. Licences stay."""
    (root / DPKG_EXCLUDE).parent.mkdir(parents=True, exist_ok=True)
    (root / DPKG_EXCLUDE).write_text("".join(f"path-exclude={pattern}\n" for pattern in EXCLUDED)
                                     + "path-include=/usr/share/doc/*/copyright\n")
    for pattern in EXCLUDED:
        for path in root.glob(pattern.lstrip("/")):
            _prune(path)


def _prune(path: Path) -> None:
    """Remove ``path`` and what it holds, but for licence (copyright) files."""
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _prune(child)
        if not any(path.iterdir()):
            path.rmdir()
    elif path.name != "copyright":
        path.unlink()

RECIPE = Recipe(name="debian", description="Debian for bare machines: kernel, systemd, ssh",
                prepare=prepare, fill=fill, takes=frozenset({"release", "mirror"}))
