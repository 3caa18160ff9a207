"""libvirtd in a dev host, for the q35 VM tests: skipped with the reason when the machine lacks
it, started as a container needs it otherwise."""

from __future__ import annotations

import pytest

from homecloud.devhost import DevHost


def require_libvirtd(host: DevHost) -> None:
    """Skip unless libvirtd and libvirt-python are there; then start libvirtd in ``host``."""
    if host.run("test", "-x", "/usr/sbin/libvirtd", check=False).returncode != 0:
        pytest.skip("libvirt-daemon-system is not installed on this machine")
    if host.run(host.python, "-c", "import libvirt", check=False).returncode != 0:
        pytest.skip("libvirt-python is not installed in homecloud's venv")
    start_libvirtd(host)


def start_libvirtd(host: DevHost) -> None:
    """libvirtd in a container: no cgroup controllers of its own (ENVIRONMENT.md); swtpm's
    local CA directory, which the package makes on the machine but the volatile root lacks."""
    host.run("sh", "-c", "grep -q '^cgroup_controllers' /etc/libvirt/qemu.conf || "
             "echo 'cgroup_controllers = [ ]' >> /etc/libvirt/qemu.conf")
    host.run("install", "-d", "-o", "tss", "-g", "root", "-m", "0750", "/var/lib/swtpm-localca")
    host.run("systemctl", "start", "virtlogd.service", "libvirtd.service")
