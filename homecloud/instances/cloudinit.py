"""cloud-init NoCloud seeds for VMs: the cloud-init-seed step of service-sets/vm.yaml.

A seed is made when the guest learns its identity through cloud-init: an imported disk
(layout "disk"), or any VM given --user-data. It is a small FAT file system labelled CIDATA
(mkfs.vfat + mcopy: no mounting, and dosfstools and mtools are small) holding the files
nocloud.py renders, kept in the instance's dataset as ``seed.img`` and attached to the VM as a
read-only disk.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from homecloud.errors import HostError, UserError
from homecloud.images.vmimage import VmImage, read_vm_image
from homecloud.instances.context import StepContext
from homecloud.instances.nocloud import TEMPLATES, SeedFiles, SeedNetwork, render_seed
from homecloud.resources import shipped_dir
from homecloud.tools import run_tool

if TYPE_CHECKING:
    from homecloud.instances.drivers.vm import VmDriver

SEED_FILE = "seed.img"
SEED_LABEL = "CIDATA"  # NoCloud looks for a file system labelled cidata or CIDATA
MIN_SEED_KIB = 1024


def seed_path(dataset_path: Path) -> Path:
    return dataset_path / SEED_FILE


def needs_seed(image: VmImage, user_data: str | None) -> bool:
    return image.layout == "disk" or user_data is not None


def read_templates(directory: Path | None = None) -> dict[str, str]:
    directory = directory or shipped_dir("cloud-init")
    return {name: (directory / name).read_text() for name in TEMPLATES}


def write_seed_disk(path: Path, files: SeedFiles) -> None:
    """A FAT image labelled CIDATA at ``path`` holding ``files``."""
    contents = files.files()
    size_kib = max(MIN_SEED_KIB,
                   math.ceil(sum(len(c.encode()) for c in contents.values()) / 1024) + 512)
    path.unlink(missing_ok=True)
    made = run_tool(["mkfs.vfat", "-n", SEED_LABEL, "-C", str(path), str(size_kib)],
                    package="dosfstools", timeout=30)
    if not made.ok:
        raise HostError(f"mkfs.vfat cannot make the cloud-init seed: {made.first_error_line()}")
    with tempfile.TemporaryDirectory(prefix="hc-seed-") as tmp:
        sources = []
        for name, text in contents.items():
            (Path(tmp) / name).write_text(text)
            sources.append(str(Path(tmp) / name))
        copied = run_tool(["mcopy", "-o", "-i", str(path), *sources, "::/"], package="mtools",
                          timeout=30)
    if not copied.ok:
        path.unlink(missing_ok=True)
        raise HostError(f"mcopy cannot fill the cloud-init seed: {copied.first_error_line()}")


class CloudInitSeed:
    """Makes the `cidata` disk when the guest needs one (an imported image, --user-data)."""

    def __init__(self, driver: VmDriver) -> None:
        self.driver = driver

    def _dataset_path(self, ctx: StepContext) -> Path:
        return self.driver.host.pool.path(ctx.instance.dataset)

    def network(self, ctx: StepContext) -> SeedNetwork | None:
        from homecloud.instances.vm_steps import vm_network  # vm_steps builds this step

        network = vm_network(self.driver, ctx)
        if network is None:
            return None
        return SeedNetwork(mac=network.mac, addresses=network.addresses,
                           gateways=network.gateways, nameservers=network.guest.nameservers,
                           search=network.guest.search)

    def do(self, ctx: StepContext) -> None:
        spec = ctx.instance.spec
        root = self._dataset_path(ctx)
        image = read_vm_image(root)
        if image is None:
            raise UserError(f"image {spec.image!r} is not a VM image: build one with "
                            "`hc image build debian --vm` or import a disk")
        if not needs_seed(image, spec.user_data):
            return
        if image.layout != "disk" and not image.cloud_init:
            raise UserError(f"image {spec.image!r} has no cloud-init to read --user-data: use "
                            "an image built with `hc image build debian --vm --cloud-init`")
        files = render_seed(read_templates(), instance_id=ctx.instance.machine_id,
                            hostname=spec.name, ssh_keys=spec.ssh_keys,
                            given_user_data=spec.user_data, network=self.network(ctx))
        write_seed_disk(seed_path(root), files)

    def undo(self, ctx: StepContext) -> None:
        seed_path(self._dataset_path(ctx)).unlink(missing_ok=True)
