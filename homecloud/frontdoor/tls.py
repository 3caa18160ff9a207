"""The door's TLS files: the user's own (config), or a self-signed pair homecloud makes once."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from homecloud.config import FrontdoorConfig
from homecloud.errors import HostError, UserError
from homecloud.tools import run_tool

CERTIFICATE_DAYS = 3650


def tls_files(config: FrontdoorConfig, directory: Path) -> tuple[Path, Path]:
    """(certificate, key): the configured pair, which must exist, or homecloud's own, made
    here if missing (EC P-256, named after this host)."""
    if config.certificate or config.key:
        if not (config.certificate and config.key):
            raise UserError("frontdoor: set both 'certificate' and 'key', or neither")
        for path in (config.certificate, config.key):
            if not path.is_file():
                raise UserError(f"frontdoor: {path} does not exist")
        return config.certificate, config.key
    certificate, key = directory / "tls.crt", directory / "tls.key"
    if certificate.exists() and key.exists():
        return certificate, key
    directory.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    partial_key = key.with_suffix(".key.new")
    partial_cert = certificate.with_suffix(".crt.new")
    result = run_tool(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                       "ec_paramgen_curve:P-256", "-nodes", "-days", str(CERTIFICATE_DAYS),
                       "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
                       "-keyout", str(partial_key), "-out", str(partial_cert)],
                      package="openssl")
    if not result.ok:
        for path in (partial_key, partial_cert):
            path.unlink(missing_ok=True)
        raise HostError(f"cannot make the front door's certificate: "
                        f"{result.first_error_line()}")
    os.chmod(partial_key, 0o600)
    os.replace(partial_key, key)
    os.replace(partial_cert, certificate)
    return certificate, key
