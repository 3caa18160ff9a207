"""Which nginx workers still accept connections after a reload, from a /proc laid out in a
temporary folder (the same files and links the kernel shows)."""

from __future__ import annotations

import os
from pathlib import Path

from homecloud.frontdoor.workers import accepting, children, listening_inodes, socket_inodes

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  " \
         "timeout inode\n"
TCP = HEADER + (
    "   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 0 "
    "1001 1 0000000000000000 100 0 0 10 0\n"
    "   1: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 0 "
    "1002 1 0000000000000000 100 0 0 10 0\n"
    "   2: 0100007F:01BB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000    33 0 "
    "2001 1 0000000000000000 20 4 30 10 -1\n")
TCP6 = HEADER + (
    "   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0 0 1003 1 0000000000000000 100 0 0 10 0\n")


def test_listening_sockets_are_read_from_the_tables() -> None:
    assert listening_inodes([TCP, TCP6]) == {"1001", "1002", "1003"}
    assert listening_inodes([HEADER]) == set()
    assert socket_inodes(["socket:[1001]", "pipe:[5]", "/dev/null", "anon_inode:[eventfd]"]) \
        == {"1001"}


def process(proc: Path, pid: int, parent: int, links: list[str], name: str = "nginx") -> None:
    (proc / str(pid) / "fd").mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(f"{pid} ({name}) S {parent} {pid} {pid} 0 -1\n")
    for number, target in enumerate(links):
        os.symlink(target, proc / str(pid) / "fd" / str(number))


def test_old_workers_accept_until_they_close_their_listening_sockets(tmp_path: Path) -> None:
    master = 100
    process(tmp_path, master, 1, ["socket:[1001]", "socket:[1002]", "socket:[1003]",
                                  "socket:[3000]"])
    (tmp_path / str(master) / "net").mkdir()
    (tmp_path / str(master) / "net" / "tcp").write_text(TCP)
    (tmp_path / str(master) / "net" / "tcp6").write_text(TCP6)
    process(tmp_path, 101, master, ["socket:[1001]", "socket:[1002]", "socket:[2001]"])
    # Shutting down: listening sockets closed, a client's connection still served.
    process(tmp_path, 102, master, ["socket:[2001]", "socket:[3000]"],
            name="nginx: worker process is shutting down")
    process(tmp_path, 103, master, [], name="nginx: cache manager")
    process(tmp_path, 200, 1, ["socket:[1001]"])  # not nginx's: another process
    (tmp_path / "self").mkdir()
    assert children(master, tmp_path) == {101, 102, 103}
    assert accepting({101, 102, 103}, master, tmp_path) == {101}
    assert accepting({101, 104}, master, tmp_path) == {101}  # 104 has exited
    assert accepting({101}, 999, tmp_path) == set()  # no master: nothing to wait for
