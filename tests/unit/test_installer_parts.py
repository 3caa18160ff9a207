"""The installer's pure parts: kernel module order, ldd's report, the initramfs archive, and
which images can go on a machine."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from homecloud.images import machineimage as machine_image
from homecloud.machines.installer import cpio, libraries, modules


def test_module_depends_read_from_modinfo() -> None:
    data = b"\x7fELF...\x00license=GPL\x00depends=virtio,virtio_ring\x00name=virtio_blk\x00"
    assert modules.module_depends(data) == ("virtio", "virtio_ring")
    assert modules.module_depends(b"\x00depends=\x00name=virtio\x00") == ()
    assert modules.module_name("nls_iso8859-1.ko") == "nls_iso8859_1"


def test_load_order_puts_dependencies_first_and_skips_built_in() -> None:
    depends = {"virtio_blk": ("virtio", "virtio_ring"), "virtio": (), "virtio_ring": (),
               "vfat": ("fat",), "fat": ()}
    order = modules.load_order(["virtio_blk", "vfat", "ahci"], depends)
    assert order == ["virtio", "virtio_ring", "virtio_blk", "fat", "vfat"]


def test_load_order_refuses_a_circle() -> None:
    with pytest.raises(ValueError, match="circle through"):
        modules.load_order(["a"], {"a": ("b",), "b": ("a",)})


def test_ldd_paths() -> None:
    report = ("\tlinux-vdso.so.1 (0x00007ffd)\n"
              "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f67fc936000)\n"
              "\t/lib64/ld-linux-x86-64.so.2 (0x00007f67fcae0000)\n")
    assert libraries.ldd_paths(report) == ["/lib/x86_64-linux-gnu/libz.so.1",
                                           "/lib64/ld-linux-x86-64.so.2"]
    assert libraries.ldd_paths("\tnot a dynamic executable\n") == []


def _entries(archive: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc archive."""
    entries, offset = {}, 0
    while True:
        assert archive[offset:offset + 6] == cpio.MAGIC
        fields = [int(archive[offset + 6 + 8 * i: offset + 14 + 8 * i], 16) for i in range(13)]
        name_size, size = fields[11], fields[6]
        start = offset + 110
        name = archive[start:start + name_size - 1].decode()
        data_start = start + name_size + (-(110 + name_size) % 4)
        data = archive[data_start:data_start + size]
        offset = data_start + size + (-size % 4)
        if name == cpio.TRAILER:
            return entries
        entries[name] = (fields[1], data)


def test_cpio_holds_the_tree(tmp_path: Path) -> None:
    (tmp_path / "lib" / "hc").mkdir(parents=True)
    (tmp_path / "lib" / "hc" / "init").write_text("#!/bin/sh\n")
    (tmp_path / "init").symlink_to("lib/hc/init")
    (tmp_path / "odd").write_bytes(b"12345")
    out = io.BytesIO()
    cpio.write_cpio(tmp_path, out)
    entries = _entries(out.getvalue())
    assert set(entries) == {"lib", "lib/hc", "lib/hc/init", "init", "odd"}
    assert entries["lib/hc/init"][1] == b"#!/bin/sh\n"
    assert entries["init"][1] == b"lib/hc/init"
    assert entries["odd"][1] == b"12345"
    again = io.BytesIO()
    cpio.write_cpio(tmp_path, again)
    assert again.getvalue() == out.getvalue()  # the same tree, the same bytes


def test_machine_image_needs_kernel_initrd_and_init(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    problem = machine_image.machine_image_problem("debian", tmp_path)
    assert problem is not None and "no kernel" in problem and "--machine" in problem
    (tmp_path / "boot" / "vmlinuz-6.1.0-cloud-amd64").write_text("")
    (tmp_path / "boot" / "initrd.img-6.1.0-cloud-amd64").write_text("")
    assert "no /sbin/init" in (machine_image.machine_image_problem("debian", tmp_path) or "")
    (tmp_path / "sbin").mkdir()
    os.symlink("/lib/systemd/systemd", tmp_path / "sbin" / "init")
    assert machine_image.machine_image_problem("debian", tmp_path) is None
    assert "not a file-system tree" in (
        machine_image.machine_image_problem("vm", tmp_path / "missing") or "")


def test_a_machine_image_keeps_licences_but_no_documentation(tmp_path: Path) -> None:
    from homecloud.images.recipes import debian_machine

    doc = tmp_path / "usr" / "share" / "doc" / "bash"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("GPL")
    (doc / "README.gz").write_text("")
    man = tmp_path / "usr" / "share" / "man" / "man1"
    man.mkdir(parents=True)
    (man / "bash.1.gz").write_text("")
    (tmp_path / "usr" / "share" / "locale" / "de" / "LC_MESSAGES").mkdir(parents=True)
    debian_machine.slim(tmp_path)
    assert (doc / "copyright").read_text() == "GPL"
    assert not (doc / "README.gz").exists()
    assert not any((tmp_path / "usr" / "share" / "man").iterdir())
    assert not any((tmp_path / "usr" / "share" / "locale").iterdir())
    rules = (tmp_path / debian_machine.DPKG_EXCLUDE).read_text()
    assert "path-exclude=/usr/share/doc/*\n" in rules
    assert "path-include=/usr/share/doc/*/copyright\n" in rules


def test_machine_images_are_named_and_refused_like_vm_images() -> None:
    from homecloud.errors import UserError
    from homecloud.images.recipes import check_build, default_image_name

    assert default_image_name("debian", False, machine=True) == "debian-machine"
    with pytest.raises(UserError, match="--vm and --machine exclude each other"):
        check_build("debian", vm=True, machine=True)
    with pytest.raises(UserError, match="recipe 'busybox' makes no machine images"):
        check_build("busybox", machine=True)


def test_image_ls_says_what_boots_on_a_bare_machine() -> None:
    from homecloud.cli.images import boots_as

    assert boots_as({"vm": False, "bare_metal": True}) == "container,machine"
    assert boots_as({"vm": False, "bare_metal": False}) == "container"
    assert boots_as({"vm": True, "machines": ["q35"]}) == "vm:q35"


def test_without_apt_lists_the_newest_downloaded_kernel_of_the_flavour_is_used() -> None:
    from homecloud.machines.installer.build import newest_cached_kernel

    names = ["linux-image-6.1.0-9-cloud-amd64_6.1.27-1_amd64.deb",
             "linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb",
             "linux-image-6.1.0-60-amd64_6.1.200-1_amd64.deb",
             "linux-image-cloud-amd64_6.1.187-1_amd64.deb", "zstd_1.5.4_amd64.deb"]
    assert newest_cached_kernel(names, "linux-image-cloud-amd64") == (
        "linux-image-6.1.0-57-cloud-amd64", "6.1.192-3")
    assert newest_cached_kernel(names, "linux-image-amd64") == (
        "linux-image-6.1.0-60-amd64", "6.1.200-1")
    assert newest_cached_kernel(["linux-image-6.1.0-1-rt-amd64_1%3a6.1-1_amd64.deb"],
                                "linux-image-rt-amd64") == ("linux-image-6.1.0-1-rt-amd64",
                                                           "1:6.1-1")
    assert newest_cached_kernel(names[3:], "linux-image-cloud-amd64") is None
