"""Whether an image can go on a bare machine: a tree that boots by itself (its kernel, initrd
and init), as `hc image build debian --machine` makes. The catalog shows it (`hc image ls`);
`hc machine add` refuses an image that fails it."""

from __future__ import annotations

from pathlib import Path

HINT = "build one with: hc image build debian --machine"


def _boot_file(root: Path, name: str) -> bool:
    link = root / name
    if link.is_symlink() or link.exists():
        return True
    return any((root / "boot").glob(f"{name}-*"))


def machine_image_problem(image: str, root: Path) -> str | None:
    """Why the image tree at ``root`` cannot be installed on a machine, or None if it can."""
    if not root.is_dir():
        return f"image {image} is not a file-system tree (a VM disk image?): {HINT}"
    missing = [name for name in ("vmlinuz", "initrd.img") if not _boot_file(root, name)]
    if missing:
        return f"image {image} has no kernel to boot a machine with ({', '.join(missing)}): {HINT}"
    if not ((root / "sbin" / "init").is_symlink() or (root / "sbin" / "init").exists()):
        return f"image {image} has no /sbin/init: {HINT}"
    return None
