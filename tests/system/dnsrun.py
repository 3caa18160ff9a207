"""Run homecloud's DNS server (``python -m homecloud.dns``) for tests and benchmarks, and ask it
questions with dnslib or dig. Plain context managers, usable outside pytest (bench/)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnslib import EDNS0, DNSRecord


def free_port(address: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``address`` (free now; good enough for tests)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = udp.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port")


def query(name: str, qtype: str = "A", *, server: str = "127.0.0.1", port: int = 53,
          tcp: bool = False, rd: bool = True, edns: int | None = None,
          timeout: float = 3.0) -> DNSRecord:
    """Ask ``server`` one question and parse the reply."""
    question = DNSRecord.question(name, qtype)
    question.header.rd = int(rd)
    if edns is not None:
        question.add_ar(EDNS0(udp_len=edns))
    data = question.send(server, port, tcp=tcp, timeout=timeout, ipv6=":" in server)
    return DNSRecord.parse(data)


def dig(server: str, port: int, *args: str) -> str:
    result = subprocess.run(["dig", f"@{server}", "-p", str(port), "+time=5", "+tries=1",
                             *args], capture_output=True, text=True, timeout=30)
    return result.stdout


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Replace the file atomically, as the agent does: the server never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config))
    tmp.replace(path)


@dataclass
class DnsProcess:
    config_path: Path
    log: Path
    process: subprocess.Popen[str]
    address: str
    port: int

    def write(self, config: dict[str, Any]) -> None:
        write_config(self.config_path, config)

    def reload(self, config: dict[str, Any], expect_serial: int | None = None) -> None:
        """Write ``config``, SIGHUP, and wait until the server serves that serial."""
        self.write(config)
        self.process.send_signal(signal.SIGHUP)
        serial = expect_serial if expect_serial is not None else config["zone"].get("serial", 1)
        self.wait_serving(config["zone"], serial)

    def soa_serial(self, zone: dict[str, Any]) -> int | None:
        origin = f"{zone['host']}.{zone.get('domain', 'home.arpa')}"
        try:
            reply = query(origin, "SOA", server=self.address, port=self.port, timeout=0.5)
        except OSError:
            return None
        return int(reply.rr[0].rdata.times[0]) if reply.rr else None

    def wait_serving(self, zone: dict[str, Any], serial: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hc-dns exited: {self.log.read_text()}")
            if self.soa_serial(zone) == serial:
                return
            time.sleep(0.05)
        raise TimeoutError(f"hc-dns does not serve serial {serial} on {self.address}:{self.port}")

    def alive(self) -> bool:
        return self.process.poll() is None


@contextlib.contextmanager
def dns_server(directory: Path, config: dict[str, Any] | None, *, address: str = "127.0.0.1",
               port: int, wait: bool = True) -> Iterator[DnsProcess]:
    """``python -m homecloud.dns`` with ``config`` (None: no file yet), stopped afterwards with
    SIGTERM; a server that crashed or logged a traceback fails the block."""
    path = directory / f"dns-{address.replace(':', '_')}-{port}.json"
    log = directory / f"dns-{address.replace(':', '_')}-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    if config is not None:
        write_config(path, config)
    with open(log, "w+") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "homecloud.dns", "--config",
                                    str(path)], stderr=stderr, text=True, env=env)
        handle = DnsProcess(path, log, process, address, port)
        try:
            if wait and config is not None:
                handle.wait_serving(config["zone"], config["zone"].get("serial", 1))
            yield handle
            assert handle.alive(), f"hc-dns died: {log.read_text()}"
        finally:
            handle.process.send_signal(signal.SIGTERM)
            try:
                code = handle.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                handle.process.kill()
                handle.process.wait()
                raise
        text = log.read_text()
        assert code == 0, f"hc-dns exited with {code}: {text}"
        assert "Traceback" not in text, text
