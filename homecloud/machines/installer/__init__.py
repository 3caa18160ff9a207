"""The installer a bare machine boots from the network: a Debian kernel and a small initramfs
whose /init runs the machine's workflow (homecloud.machines.workflow) against the provisioning
server, built and cached by ``build.ensure_installer``."""
