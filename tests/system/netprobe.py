"""A tiny client and server for network system tests, run inside a namespace:

    netprobe.py serve-tcp|serve-udp ADDRESS PORT     prints "ready", answers each client with
                                                     the address it came from
    netprobe.py connect-tcp|connect-udp ADDRESS PORT TIMEOUT
                                                     prints what the server answered; exit 1
                                                     if nothing did
    netprobe.py connect-icmp ADDRESS 0 TIMEOUT       an IPv4 ping (no ping binary needed)
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def serve(kind: str, address: str, port: int) -> None:
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(_family(address), sock_type)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    if kind == "tcp":
        sock.listen()
    print("ready", flush=True)
    while True:
        if kind == "tcp":
            conn, peer = sock.accept()
            with conn:
                conn.sendall(f"{peer[0]}\n".encode())
        else:
            _, peer = sock.recvfrom(2048)
            sock.sendto(f"{peer[0]}\n".encode(), peer)


def connect(kind: str, address: str, port: int, timeout: float) -> int:
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with socket.socket(_family(address), sock_type) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
            if kind == "udp":
                sock.send(b"hello")
            data = sock.recv(2048)
        except OSError as exc:
            print(f"no answer: {exc}", file=sys.stderr)
            return 1
    print(data.decode().strip())
    return 0


def _checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def ping(address: str, timeout: float) -> int:
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"homecloud"
    packet = header[:2] + struct.pack("!H", _checksum(header)) + header[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, peer = sock.recvfrom(2048)
            icmp = data[(data[0] & 0x0F) * 4:]
            if peer[0] == address and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                print(peer[0])
                return 0
    print("no answer", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    command, address, port = argv[0], argv[1], int(argv[2])
    action, kind = command.split("-")
    if action == "serve":
        serve(kind, address, port)
        return 0
    if kind == "icmp":
        return ping(address, float(argv[3]))
    return connect(kind, address, port, float(argv[3]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
