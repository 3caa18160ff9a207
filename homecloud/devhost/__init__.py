"""Dev hosts: a real systemd (PID 1, D-Bus, journald) booted with systemd-nspawn on this machine's
own /usr, with homecloud installed, for developing and testing where the machine's PID 1 is not
systemd. `hc-devhost` is the command line; tests use the API below.

    host = boot("dev1")            # boots, waits for systemd, runs hostsetup inside
    host.run("systemctl", "is-active", "hcd.socket")
    host.hc("ls", json=True)
    host.address                   # its own IPv4 address on the bridge hcdev0 (netplan.py)
    shutdown("dev1")               # poweroff, release loop devices, remove its state
"""

from homecloud.devhost.host import DevHost, DevHostCommandError, guest_file
from homecloud.devhost.lifecycle import boot, get, list_devhosts, reboot, shutdown

__all__ = ["DevHost", "DevHostCommandError", "boot", "get", "guest_file", "list_devhosts",
           "reboot", "shutdown"]
