"""A guest's root file system as homecloud writes it before the guest starts: its identity
(hostname, machine-id, /etc/hosts, /etc/resolv.conf) and the file operations that never follow
the image's links out of the tree.

A fresh machine-id is written rather than an empty file: an empty one makes the guest's systemd
treat the boot as its first (presets for every unit, slower READY), and a known id lets the host
pass it on (nspawn ``--uuid=``, machined) and find the guest's journal directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from homecloud.errors import UserError
from homecloud.instances.spec import InstanceSpec


def new_machine_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class GuestNetwork:
    """What the guest is told about its network: its addresses (for /etc/hosts) and its
    resolvers and search domain (for /etc/resolv.conf)."""

    addresses: tuple[str, ...]
    nameservers: tuple[str, ...]
    search: str


def write_identity(root: Path, spec: InstanceSpec, machine_id: str,
                   network: GuestNetwork | None = None) -> None:
    """Write hostname, machine-id, /etc/hosts and (with a network) /etc/resolv.conf into a
    forked root file system.

    The tree belongs to the image, so its paths are never followed out of ``root``: a symlink
    in place of /etc/hostname is replaced, not written through.
    """
    if not (root / "usr").is_dir():
        raise UserError(f"image {spec.image!r} is not an OS tree (it has no /usr directory), "
                        "so systemd-nspawn refuses to run it; rebuild or re-import the image")
    if spec.boot and not boots_systemd(root):
        raise UserError(f"image {spec.image!r} cannot boot: it has no systemd init "
                        "(/usr/lib/systemd/systemd), and booting waits for the guest's systemd "
                        "to be ready; run a command instead with `-- CMD`")
    write_file_in_root(root, "etc/hostname", f"{spec.name}\n")
    write_file_in_root(root, "etc/machine-id", f"{machine_id}\n", mode=0o444)
    current = read_file_in_root(root, "etc/hosts")
    if network is None:
        hosts = hosts_file(current, spec.name)
    else:
        fqdn = f"{spec.name}.{network.search}"
        hosts = hosts_file(current, spec.name, network.addresses, fqdn)
        write_file_in_root(root, "etc/resolv.conf", resolv_conf(network))
    write_file_in_root(root, "etc/hosts", hosts)


def hosts_file(current: str, name: str, addresses: tuple[str, ...] = (),
               fqdn: str | None = None) -> str:
    """``current`` naming the instance: its own addresses with its full name when it has a
    network, else ``127.0.1.1 name`` (Debian's convention for a host without a fixed address).
    Lines naming it from an earlier write are replaced."""
    names = f"{fqdn}\t{name}" if fqdn else name
    mine = {"127.0.1.1", *addresses}
    lines = [line for line in current.splitlines() if (line.split() or [""])[0] not in mine]
    if not any(line.split()[:1] == ["127.0.0.1"] for line in lines):
        lines.insert(0, "127.0.0.1\tlocalhost")
    for offset, address in enumerate(addresses or ("127.0.1.1",), 1):
        lines.insert(offset, f"{address}\t{names}")
    return "\n".join(lines) + "\n"


def resolv_conf(network: GuestNetwork) -> str:
    """The bridge's addresses as resolvers (homecloud's DNS, which forwards the rest), and the
    host's zone to search, so `getent hosts web` finds web.<host>.<domain>."""
    lines = ["# written by homecloud: its DNS server on the host bridge"]
    lines += [f"nameserver {server}" for server in network.nameservers]
    lines.append(f"search {network.search}")
    return "\n".join(lines) + "\n"


def boots_systemd(root: Path) -> bool:
    """Whether `systemd-nspawn --boot` would start systemd in ``root``: it runs the first of
    /usr/lib/systemd/systemd, /lib/systemd/systemd and /sbin/init that exists. Any other init
    (busybox's) never sends READY=1, so the start would hang until its timeout."""
    # Absolute symlinks (sbin/init -> /lib/systemd/systemd) point into the guest, so resolve
    # them against root by hand.
    for candidate in ("usr/lib/systemd/systemd", "lib/systemd/systemd"):
        if _resolve_in_root(root, candidate) is not None:
            return True
    init = _resolve_in_root(root, "sbin/init")
    return init is not None and init.name == "systemd"


def _resolve_in_root(root: Path, rel: str) -> Path | None:
    """``rel`` resolved inside ``root`` as the guest would see it; None unless a regular file."""
    parts = list(Path(rel).parts)
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", ".", "/"):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = list(Path(target).parts) + parts
            continue
        resolved.append(part)
    path = root.joinpath(*resolved)
    return path if path.is_file() else None


def _open_parent(root: Path, rel: str) -> tuple[int, str]:
    """An fd of the directory holding ``rel`` inside ``root``, refusing symlinked directories."""
    parts = Path(rel).parts
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                new = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                new = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UserError(f"image has /{'/'.join(parts[:-1])} as a symlink or file; "
                                    "homecloud needs a real directory there") from exc
                raise
            os.close(fd)
            fd = new
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def read_file_in_root(root: Path, rel: str) -> str:
    fd, leaf = _open_parent(root, rel)
    try:
        try:
            file_fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:  # missing, or a symlink we will replace anyway
            return ""
        with os.fdopen(file_fd) as f:
            return f.read()
    finally:
        os.close(fd)


def write_file_in_root(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    """Atomically replace ``root/rel`` (a symlink there is replaced, never followed)."""
    fd, leaf = _open_parent(root, rel)
    tmp = f".{leaf}.hc-new"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=fd)
        file_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode,
                          dir_fd=fd)
        with os.fdopen(file_fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode, dir_fd=fd)
        os.rename(tmp, leaf, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
