"""The auth decisions' facts (decisions.Accounts) from the state database.

Argon2id costs 64 MiB and tens of milliseconds per check, so at most ``CONCURRENT_HASHES`` run
at once (a flood of logins queues instead of exhausting memory), and a Basic credential that
verified is remembered for ``BASIC_CACHE`` seconds (scripts send it with every request).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from homecloud.frontdoor.bans import BanPolicy
from homecloud.frontdoor.passwords import digest, dummy_hash, verify_password
from homecloud.frontdoor.records import FrontdoorRecords, address_keys

log = logging.getLogger("homecloud.frontdoor")
CONCURRENT_HASHES = 2
BASIC_CACHE = 60.0
BASIC_CACHE_SIZE = 1024


class StoredAccounts:
    def __init__(self, records: FrontdoorRecords, policy: BanPolicy) -> None:
        self.records = records
        self.policy = policy
        self._hashing = threading.BoundedSemaphore(CONCURRENT_HASHES)
        self._lock = threading.Lock()
        self._verified: dict[str, float] = {}  # credential digest -> until
        self._dummy: str | None = None

    def banned(self, address: str, user: str | None, now: float) -> float | None:
        return self.records.banned(address_keys(address, user), now)

    def session_user(self, session: str, now: float) -> str | None:
        return self.records.session_user(digest(session), now)

    def token_user(self, token: str) -> str | None:
        return self.records.token_user(digest(token))

    def groups(self, user: str) -> frozenset[str]:
        return self.records.groups(user)

    def check_password(self, user: str, password: str) -> bool:
        stored = self.records.password_hash(user)
        # The cache key covers the stored hash: a new password or a removed user misses it.
        key = hashlib.sha256(f"{user}\0{password}\0{stored}".encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            if self._verified.get(key, 0.0) > now:
                return stored is not None
        with self._hashing:
            if stored is None:
                if self._dummy is None:
                    self._dummy = dummy_hash()
                verify_password(self._dummy, password)
                return False
            ok = verify_password(stored, password)
        if ok:
            with self._lock:
                if len(self._verified) >= BASIC_CACHE_SIZE:
                    self._verified = {k: v for k, v in self._verified.items() if v > now}
                    if len(self._verified) >= BASIC_CACHE_SIZE:
                        self._verified.clear()
                self._verified[key] = now + BASIC_CACHE
        return ok

    def failed(self, address: str, user: str | None, now: float) -> None:
        for key, until in self.records.fail(address_keys(address, user), self.policy, now):
            log.warning("banned %s for %d s after %d failed logins within %d s", key,
                        round(until - now), self.policy.failures, round(self.policy.window))
