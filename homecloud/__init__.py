"""homecloud: a systemd-native cloud at home."""

__version__ = "0.1.0"
