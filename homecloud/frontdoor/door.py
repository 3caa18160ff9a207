"""homecloud's nginx: its configuration written from the routes, checked with `nginx -t`, and
put in place only when the check passes, then reloaded (SIGHUP: nginx starts new workers on the
new configuration and lets the old ones finish their requests). A configuration that fails the
check is never installed: the running door keeps serving and the caller gets one line."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from homecloud.config import Config
from homecloud.errors import HostError
from homecloud.frontdoor import DOOR_UNIT, OWN_PREFIX, RUN_DIR, workers
from homecloud.frontdoor.nginx_conf import GENERATION, DoorFiles, render
from homecloud.frontdoor.routing import Route
from homecloud.frontdoor.tls import tls_files
from homecloud.systemd.transient import Systemd
from homecloud.tools import run_tool

NGINX = "/usr/sbin/nginx"
CHECK_TIMEOUT = 30.0
RELOAD_WAIT = 10.0


def door_user_id() -> int | None:
    """The uid nginx's workers run as (the only peer, with root, of the agent's door socket)."""
    import pwd

    try:
        return pwd.getpwnam(DoorFiles.user).pw_uid
    except KeyError:
        return None


def certificate_fingerprint(config: Config) -> str:
    """The SHA-256 digest of the door's certificate (DER), colon-separated hex."""
    import ssl

    certificate, _ = tls_files(config.frontdoor, door_dir(config))
    der = ssl.PEM_cert_to_DER_cert(certificate.read_text())
    return hashlib.sha256(der).digest().hex(":").upper()


def door_dir(config: Config) -> Path:
    return config.state_dir / "frontdoor"


def config_path(config: Config) -> Path:
    return door_dir(config) / "nginx.conf"


def _ipv6() -> bool:
    return Path("/proc/net/if_inet6").exists()


def nginx_complaint(stderr: str) -> str:
    """nginx's first [emerg] line without its time stamp and process ids."""
    lines = stderr.strip().splitlines()
    first = next((line for line in lines if "[emerg]" in line), lines[0] if lines else "")
    match = re.search(r"\[emerg\] (?:\d+#\d+: )?(.*)", first)
    return match.group(1) if match else first.removeprefix("nginx: ")


def check(path: Path, prefix: Path) -> None:
    """`nginx -t` of ``path``: HostError with its first complaint if it fails."""
    Path(RUN_DIR).mkdir(parents=True, exist_ok=True)
    result = run_tool([NGINX, "-t", "-q", "-c", str(path), "-p", f"{prefix}/"],
                      timeout=CHECK_TIMEOUT, package="nginx")
    if not result.ok:
        raise HostError(f"the front door's new configuration fails `nginx -t`, so the running "
                        f"one stays: {nginx_complaint(result.stderr)}")


def generation_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_config(config: Config, routes: Sequence[Route]) -> str | None:
    """Render, check and install the configuration; its generation if it changed."""
    directory = door_dir(config)
    certificate, key = tls_files(config.frontdoor, directory)
    text = render(config.frontdoor, DoorFiles(certificate, key, ipv6=_ipv6()), routes)
    generation = generation_of(text)
    text = text.replace(GENERATION, generation)
    target = config_path(config)
    if target.exists() and target.read_text() == text:
        return None
    candidate = target.with_suffix(".conf.new")
    directory.mkdir(parents=True, exist_ok=True)
    candidate.write_text(text)
    try:
        check(candidate, directory)
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    os.replace(candidate, target)
    return generation


def ensure_config(config: Config, routes: Sequence[Route]) -> None:
    """A configuration for the door to start with (at boot, before the agent has run)."""
    if not config_path(config).exists():
        write_config(config, routes)


def serving(port: int) -> str | None:
    """The generation of the configuration the door on this host serves (None: no answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(f"GET {OWN_PREFIX}generation HTTP/1.0\r\nHost: localhost\r\n\r\n"
                         .encode())
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return None
    head, _, body = reply.partition(b"\r\n\r\n")
    return body.decode(errors="replace").strip() if head.startswith(b"HTTP/1.1 200") else None


def _master_pid() -> int | None:
    try:
        return int((Path(RUN_DIR) / "nginx.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def reload(systemd: Systemd, config: Config, generation: str) -> None:
    """Tell the running door to load the new configuration (or start it), and return once it
    serves with it on every port: the route the user just added answers when `hc route add`
    returns. New workers answering is not enough: until the old ones close their listening
    sockets, they may take a new connection (on 443 as well as 80) with the old routes."""
    master = _master_pid()
    old = workers.children(master) if master is not None else set()
    if not systemd.signal_unit(DOOR_UNIT, signal.SIGHUP):
        old = set()
        try:
            systemd.start_unit(DOOR_UNIT)
        except Exception as exc:  # the routes are saved; the door comes up with them later
            raise HostError(f"{DOOR_UNIT} did not start: {exc}; see `journalctl -u "
                            f"{DOOR_UNIT}`") from None
    deadline = time.monotonic() + RELOAD_WAIT
    while serving(config.frontdoor.http) != generation or (
            master is not None and workers.accepting(old, master)):
        if time.monotonic() > deadline:
            raise HostError(f"the front door did not take its new configuration within "
                            f"{RELOAD_WAIT:g} s; see `journalctl -u {DOOR_UNIT}`")
        time.sleep(0.02)
