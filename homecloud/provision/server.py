"""homecloud's provisioning server: plain HTTP on port 8067 of the provisioning interface.

    GET  /boot.ipxe?mac=MAC          the machine's iPXE script (boot_script.py)
    GET  /installer/vmlinuz, /installer/initrd.img    homecloud's installer
    GET  /boot/ipxe.efi, /boot/undionly.kpxe          iPXE, for UEFI HTTP boot firmware
    GET  /m/NAME/workflow            (Bearer token) the machine, its image and its actions
    POST /m/NAME/events              (Bearer token) a step started, finished ok or failed
    POST /m/NAME/done                (Bearer token) the workflow finished: installed
    GET  /m/NAME/image, /m/NAME/rootfs   (Bearer token) the machine's image, streamed

Files and images are streamed in pieces, never held whole in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from homecloud.errors import HomecloudError, NotFound, UserError
from homecloud.machines.boot_script import INSTALLER_INITRD, INSTALLER_KERNEL
from homecloud.machines.dnsmasq_conf import BIOS_LOADER, BOOT_DIR, BOOT_URL_PATH, UEFI_LOADER
from homecloud.provision.answers import ProvisionAnswers
from homecloud.snapshots.transport import ChunkedWriter

INSTALLER_DIR = Path("/var/lib/homecloud/installer")
MAX_BODY = 1 << 20
CHUNK = 1 << 20
IMAGE_KINDS = ("image", "rootfs")  # /m/NAME/image: btrfs send; /m/NAME/rootfs: diskless
# Writes a machine image's stream (kind, image name) to a binary file object as it is made,
# encoded as the answers' image_encoding says.
ImageWriter = Callable[[str, str, BinaryIO], None]


class ProvisionServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], answers: ProvisionAnswers,
                 installer_dir: Path = INSTALLER_DIR,
                 write_image: ImageWriter | None = None, boot_dir: Path = BOOT_DIR) -> None:
        self.answers = answers
        self.installer_dir = installer_dir
        self.boot_dir = boot_dir
        self.write_image = write_image
        super().__init__(address, ProvisionHandler)


class ProvisionHandler(BaseHTTPRequestHandler):
    server: ProvisionServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        print(f"{self.client_address[0]} {format % args}", file=sys.stderr, flush=True)

    # -- dispatch --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        try:
            if method == "GET" and parts == ["boot.ipxe"]:
                mac = parse_qs(url.query).get("mac", [""])[0]
                self._send(200, self.server.answers.boot_script(mac).encode(), "text/plain")
            elif method == "GET" and len(parts) == 2 and parts[0] == "installer":
                self._installer_file(parts[1])
            elif method == "GET" and len(parts) == 2 and parts[0] == BOOT_URL_PATH:
                self._boot_file(parts[1])
            elif len(parts) == 3 and parts[0] == "m":
                self._machine(method, parts[1], parts[2])
            else:
                raise NotFound(f"no such path {url.path!r}")
        except HomecloudError as exc:
            self._send_json(exc.http_status, exc.to_json())
        except BrokenPipeError:
            self.close_connection = True

    def _machine(self, method: str, name: str, what: str) -> None:
        answers = self.server.answers
        header = self.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        record = answers.authorized(name, token)
        if method == "GET" and what == "workflow":
            self._send_json(200, answers.workflow(record))
        elif method == "POST" and what == "events":
            self._send_json(200, answers.event(record, self._body()))
        elif method == "POST" and what == "done":
            self._body()
            self._send_json(200, answers.done(record))
        elif method == "GET" and what in IMAGE_KINDS:
            writer = self.server.write_image
            if writer is None:
                raise NotFound(f"this server does not serve machine {what}s")
            self._stream(lambda out: writer(what, record.spec.image, out))
        else:
            raise NotFound(f"no such path /m/{name}/{what}")

    # -- bodies ----------------------------------------------------------------------------------
    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise UserError(f"the body is too large (at most {MAX_BODY} bytes)")
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise UserError("the body is not JSON") from None

    def _installer_file(self, name: str) -> None:
        if name not in (INSTALLER_KERNEL, INSTALLER_INITRD):
            raise NotFound(f"no installer file {name!r}")
        path = installer_file(self.server.installer_dir, name)
        self._file(path, "the installer is not built yet ({path} is missing): "
                         "`hc provision enable` builds it")

    def _boot_file(self, name: str) -> None:
        if name not in (UEFI_LOADER, BIOS_LOADER):
            raise NotFound(f"no boot file {name!r}")
        self._file(self.server.boot_dir / name,
                   "{path} is missing: hc-provision copies it from the ipxe package when it "
                   "starts (see its log)")

    def _file(self, path: Path, missing: str) -> None:
        """``path`` as the body, in pieces; NotFound with ``missing`` (``{path}`` filled in)
        when there is no such file."""
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise NotFound(missing.format(path=path)) from None
        with handle:
            size = os.fstat(handle.fileno()).st_size  # the file opened, even if replaced since
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            shutil.copyfileobj(handle, self.wfile, CHUNK)

    def _stream(self, write: Callable[[BinaryIO], None]) -> None:
        """A body of unknown length: chunked, written as it is made."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        encoding = self.server.answers.image_encoding
        if encoding != "identity":
            self.send_header("Content-Encoding", encoding)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunked = ChunkedWriter(self.wfile.write, self.wfile.flush)
        try:
            write(chunked)  # type: ignore[arg-type]
        except Exception as exc:  # the body has begun: cut it, so the client sees it unfinished
            self.log_message("stream for %s cut: %s", self.path, exc)
            self.close_connection = True
            return
        chunked.finish()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode() + b"\n", "application/json")


def installer_file(root: Path, name: str) -> Path:
    """``name`` of the newest installer build under ``root`` (each build is a directory named
    by the digest of its inputs; a new build replaces the older ones), or ``root/name``."""
    try:
        builds = [d for d in root.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and (d / name).is_file()]
    except FileNotFoundError:
        builds = []
    if not builds:
        return root / name
    return max(builds, key=lambda d: d.stat().st_mtime) / name
