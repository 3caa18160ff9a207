"""Secrets: Argon2id password hashes (argon2-cffi) and random session ids and tokens, kept in
the state database only as digests."""

from __future__ import annotations

import hashlib
import secrets

from homecloud.errors import HostError


def _hasher():  # type: ignore[no-untyped-def]
    try:
        from argon2 import PasswordHasher
    except ImportError:
        raise HostError("argon2-cffi is not installed in homecloud's venv: pip install "
                        "argon2-cffi") from None
    return PasswordHasher()  # RFC 9106's low-memory profile: Argon2id, 64 MiB, t=3


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def verify_password(stored: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


# Checked against when the user does not exist, so an unknown name costs as long as a wrong
# password (made once per process, on first use).
def dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def new_secret() -> str:
    """A session id or token: 256 random bits. Prefixed, so that a token never starts with '-'
    (`hc --token -x...` would read it as an option) and is recognisable when pasted."""
    return f"hc_{secrets.token_urlsafe(32)}"


def digest(secret: str) -> str:
    """What the database keeps of a session id or token: a leaked database logs nobody in. (A
    fast hash suffices: the secrets are random, not guessable words.)"""
    return hashlib.sha256(secret.encode()).hexdigest()
