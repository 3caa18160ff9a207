"""qemu's two JSON protocols over UNIX sockets: QMP (the machine: power button, status) and
the guest agent's (commands inside the guest), which share their framing: one JSON object per
message, answers ``{"return": ...}`` or ``{"error": {"desc": ...}}``; QMP also sends events.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from homecloud.errors import HomecloudError

AGENT_ANSWER = 3.0  # seconds a guest agent gets to answer its first message


class ProtocolError(HomecloudError):
    """qemu or the guest agent refused a command, or did not answer."""


class JsonChannel:
    """One connection: send an object, read the next object (buffered by lines)."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.buffer = b""

    def __enter__(self) -> JsonChannel:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the socket was closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        # The guest agent may prefix a sync answer with 0xff (guest-sync-delimited).
        line = line.lstrip(b"\xff").strip()
        if not line:
            return self.receive()
        value = json.loads(line)
        if not isinstance(value, dict):
            raise ProtocolError(f"unexpected message: {line[:80]!r}")
        return value

    def answer(self) -> Any:
        """The next answer, skipping events."""
        while True:
            message = self.receive()
            if "event" in message:
                continue
            if "error" in message:
                raise ProtocolError(str(message["error"].get("desc", message["error"])))
            return message.get("return")

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.send(message)
        return self.answer()


def qmp(path: Path, timeout: float = 5.0) -> JsonChannel:
    """A QMP connection in command mode."""
    channel = JsonChannel(path, timeout)
    try:
        channel.receive()  # the greeting
        channel.call("qmp_capabilities")
    except BaseException:
        channel.sock.close()
        raise
    return channel


def powerdown(path: Path, timeout: float) -> bool:
    """Press the VM's power button and wait for qemu to exit (its QMP socket closes); False if
    it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with qmp(path) as channel:
        channel.call("system_powerdown")
        while time.monotonic() < deadline:
            channel.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                channel.receive()
            except TimeoutError:  # an OSError too, but qemu still runs: not powered off
                break
            except OSError:  # qemu closed the socket as it exited
                return True
    return False


def guest_agent(path: Path, name: str) -> JsonChannel:
    """A guest agent connection, synchronised: an answer left from an earlier client is
    skipped. ProtocolError naming the VM when no agent answers."""
    try:
        channel = JsonChannel(path, AGENT_ANSWER)
    except OSError as exc:
        raise ProtocolError(f"VM {name} is not running ({exc.strerror or exc})") from None
    token = secrets.randbelow(1 << 31)
    try:
        channel.send({"execute": "guest-sync", "arguments": {"id": token}})
        while channel.answer() != token:
            pass
    except (OSError, ValueError):
        channel.sock.close()
        raise ProtocolError(f"VM {name}'s guest agent does not answer: its image has no "
                            "qemu-guest-agent, or the guest is still booting") from None
    channel.sock.settimeout(None)
    return channel


class AgentCommands(Protocol):
    """What sends guest agent commands: a JsonChannel, or libvirt for a q35 domain (libvirt
    holds that domain's agent channel itself)."""

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class GuestResult:
    status: int
    stdout: bytes
    stderr: bytes


def guest_exec(channel: AgentCommands, argv: Sequence[str], stdin: bytes | None = None,
               poll: float = 0.05) -> GuestResult:
    """Run ``argv`` in the guest with its output captured; wait for it to end."""
    arguments: dict[str, Any] = {"path": argv[0], "arg": list(argv[1:]),
                                 "capture-output": True}
    if stdin:
        arguments["input-data"] = base64.b64encode(stdin).decode()
    pid = channel.call("guest-exec", arguments)["pid"]
    while True:
        status = channel.call("guest-exec-status", {"pid": pid})
        if status.get("exited"):
            code = status.get("exitcode")
            if code is None:  # killed by a signal, as a shell would report it
                code = 128 + int(status.get("signal", 0))
            return GuestResult(int(code), base64.b64decode(status.get("out-data", "")),
                               base64.b64decode(status.get("err-data", "")))
        time.sleep(poll)
