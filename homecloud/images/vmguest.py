"""What homecloud's VM images carry inside the guest, as files (pure logic: texts and paths).

- ``hc-ready.service`` writes ``READY=1`` to the virtio-serial port READY_PORT once the system
  is up (after multi-user.target). A udev rule pulls it in when the port appears, so a VM
  started without the port boots normally and nothing waits for a device that never comes.
- ``hc-ssh-host-keys.service`` makes the SSH host keys at first boot: each VM gets its own,
  none is baked into the image.
- ``/etc/fstab`` mounts the root file system by its label and grows it to the disk's size
  (``--disk`` grows a VM's volume before boot).
- systemd-networkd runs; the VM driver writes static addresses into /etc/systemd/network.
"""

from __future__ import annotations

from homecloud.images.vmimage import READY_PORT, ROOT_LABEL

# The kernel command line for direct boot and for the systemd-boot entry: the root by label
# (the same in a fork as in the image), the serial console, and an immediate reboot on panic
# so a VM that cannot boot ends instead of hanging.
CMDLINE = f"root=LABEL={ROOT_LABEL} rw console=ttyS0 panic=-1"

READY_UNIT = "hc-ready.service"
SSH_KEYS_UNIT = "hc-ssh-host-keys.service"
# Units enabled in the image (systemctl --root), beyond what the packages enable themselves.
ENABLED_UNITS = ("systemd-networkd.service", SSH_KEYS_UNIT)


def _systemd_escape_path(path: str) -> str:
    """The unit name part for a path, as `systemd-escape --path` makes it (ASCII names)."""
    out = []
    for i, char in enumerate(path.strip("/")):
        if char == "/":
            out.append("-")
        elif char.isalnum() or char == "_" or (char == "." and i > 0):
            out.append(char)
        else:
            out.append(f"\\x{ord(char):02x}")
    return "".join(out)


READY_DEVICE = f"/dev/virtio-ports/{READY_PORT}"
READY_DEVICE_UNIT = _systemd_escape_path(READY_DEVICE) + ".device"

FILES: dict[str, str] = {
    f"etc/systemd/system/{READY_UNIT}": f"""\
[Unit]
Description=Tell the host that this machine is up
After=multi-user.target {READY_DEVICE_UNIT}
BindsTo={READY_DEVICE_UNIT}

[Service]
# exec, not oneshot: a write to a port the host has not opened waits, and must not hold up
# the boot.
Type=exec
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo READY=1 > {READY_DEVICE}'
""",
    "etc/udev/rules.d/70-homecloud-ready.rules": (
        f'SUBSYSTEM=="virtio-ports", ATTR{{name}}=="{READY_PORT}", TAG+="systemd", '
        f'ENV{{SYSTEMD_WANTS}}+="{READY_UNIT}"\n'),
    # A login prompt on a microVM's text console (hvc0: `hc console`). virtio_console is not in
    # the initrd, so hvc0 appears after systemd's getty generator has looked for it; the device
    # itself asks for its getty, and a machine without hvc0 (q35) waits for none.
    "etc/udev/rules.d/70-homecloud-console.rules": (
        'SUBSYSTEM=="tty", KERNEL=="hvc0", ENV{SYSTEMD_WANTS}+="serial-getty@hvc0.service"\n'),
    f"etc/systemd/system/{SSH_KEYS_UNIT}": """\
[Unit]
Description=Make this machine's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
""",
    "etc/fstab": f"LABEL={ROOT_LABEL} / ext4 rw,errors=remount-ro,x-systemd.growfs 0 1\n",
}

# Made when the image is built: each VM makes its own at first boot.
SSH_HOST_KEYS_GLOB = "etc/ssh/ssh_host_*"
