"""When failed logins ban an address or a user name. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from homecloud.config import FrontdoorConfig


@dataclass(frozen=True)
class BanPolicy:
    failures: int = 5  # this many failures ...
    window: float = 120.0  # ... within this many seconds ...
    ban: float = 300.0  # ... ban for this many seconds

    @classmethod
    def from_config(cls, config: FrontdoorConfig) -> BanPolicy:
        return cls(config.failures, float(config.window), float(config.ban))

    def since(self, now: float) -> float:
        """Failures before this time no longer count."""
        return now - self.window

    def ban_until(self, recent_failures: int, now: float) -> float | None:
        """The end of the ban ``recent_failures`` (within the window, this one included) earn,
        or None."""
        return now + self.ban if recent_failures >= self.failures else None


def address_key(address: str) -> str:
    return f"address:{address}"


def user_key(name: str) -> str:
    return f"user:{name}"
