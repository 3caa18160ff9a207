"""TLS to a homecloud front door, its certificate verified before a byte of the request (and
its token) is sent: against the system's CAs, against a CA file, or pinned by the SHA-256
fingerprint of the certificate (homecloud's own door certificate is self-signed; `hc user
token` prints its fingerprint). Verification is never switched off.

Kept light (socket only at import): the `hc` command uses it and must start fast.
"""

from __future__ import annotations

import socket

CONNECT_TIMEOUT = 10.0  # seconds to open the TCP connection


class DoorTLSError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DoorUnreachable(DoorTLSError):
    """No TCP connection (down, refused, no route)."""


class DoorUntrusted(DoorTLSError):
    """The certificate's chain or name did not verify; ``reason`` says how."""


class DoorHandshakeFailed(DoorTLSError):
    """The TLS handshake failed for another reason."""


class WrongFingerprint(DoorTLSError):
    """The certificate is not the pinned one."""


def normal_fingerprint(text: str) -> str | None:
    """``text`` as 64 lower-case hex digits (colons dropped), or None if it is not one."""
    digits = text.replace(":", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return digits


def connect(hostname: str, port: int, *, fingerprint: str | None, ca: str | None,
            timeout: float | None) -> socket.socket:
    """A TLS connection to the door whose certificate has ``fingerprint`` (normalised), or
    else is vouched for by ``ca`` (a file) or the system's CAs; ``timeout`` for its reads and
    writes."""
    import ssl

    if fingerprint:
        # Pinned: the digest vouches for the door, not a chain or a name.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=ca)
    try:
        raw = socket.create_connection((hostname, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise DoorUnreachable(exc.strerror or str(exc) or type(exc).__name__) from None
    try:
        sock = context.wrap_socket(raw, server_hostname=hostname)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        raise DoorUntrusted(str(exc.verify_message)) from None
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise DoorHandshakeFailed(str(exc)) from None
    if fingerprint:
        import hashlib

        der = sock.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).hexdigest() != fingerprint:
            sock.close()
            raise WrongFingerprint("the certificate does not have the fingerprint given")
    sock.settimeout(timeout)
    return sock
