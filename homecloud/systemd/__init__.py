"""Unit composition over systemd's D-Bus API (pystemd): transient services, status, journals."""
