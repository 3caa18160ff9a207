"""The agent and images end to end: the `hc` CLI against the real hcd, started by hcd.socket
under the real systemd of a dev host, its real socket and its real btrfs pool.

Every bad input is shown as the user sees it (the one `hc:` line on stderr and the exit code of
the CLI contract: 1 user error, 2 usage, 3 the host lacks something) and is checked to leave the
host as it was: the same `hc image ls --json`, no `images/.partial-*` dataset, no stray file in
the pool, no `hc-*` unit, nothing written outside the pool.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from cli_checks import hc_fails

from homecloud.devhost import DevHost, guest_file
from homecloud.sizes import format_size, parse_size

pytestmark = pytest.mark.system

STATE_DIR = "/var/lib/homecloud"
POOL = f"{STATE_DIR}/pool"
IMAGES = f"{POOL}/images"
POOL_IMAGE = f"{STATE_DIR}/pool.img"
DATASET_PARENTS = (IMAGES, f"{POOL}/instances")
UNITS_MARK = "=== units ==="
SOCKET = "/run/homecloud/hc.sock"
STRANGER = "hcstranger"
INVALID = "is invalid: use letters, digits, '.', '_' and '-', starting with a letter or digit"
FORMATS = ".tar, .tar.gz, .tar.xz, .tar.zst or .tar.bz2"
FULL_HINT = "remove unused images, instances or snapshots, or grow the pool"


# -- running hc and looking at the host ---------------------------------------------------------

@dataclass(frozen=True)
class HostState:
    """What a failed request must leave as it was."""

    images: list[dict[str, Any]]  # `hc image ls --json`
    pool_entries: list[str]  # the pool's top two levels but for DATASET_PARENTS: datasets,
    # partials and stray files
    units: list[str]  # hc-* units systemd knows

    @property
    def partials(self) -> list[str]:
        return [entry for entry in self.pool_entries if "/.partial-" in entry]


def host_state(host: DevHost) -> HostState:
    images = host.hc("image", "ls", json=True)  # first: the agent makes the pool at its start
    listing = host.run("sh", "-c", f"find {POOL} -mindepth 1 -maxdepth 2 && echo {UNITS_MARK} && "
                       "systemctl list-units 'hc-*' --all --plain --no-legend --no-pager").stdout
    found, _, units = listing.partition(f"{UNITS_MARK}\n")
    # The parents of datasets appear on first use and stay: not something left behind.
    entries = set(found.splitlines()) - set(DATASET_PARENTS)
    return HostState(images=images, pool_entries=sorted(entries),
                     units=sorted(line.split()[0] for line in units.splitlines() if line.strip()))


@contextmanager
def leaves_host_as_it_was(host: DevHost) -> Iterator[HostState]:
    before = host_state(host)
    assert before.partials == []
    yield before
    assert host_state(host) == before


def exists(host: DevHost, path: str) -> bool:
    return host.run("test", "-e", path, check=False).returncode == 0


def agent_pid(host: DevHost) -> int:
    """The running agent's pid (0 when hcd.service is not running)."""
    return int(host.run("systemctl", "show", "-p", "MainPID", "--value", "hcd.service").stdout)


def start_agent(host: DevHost) -> int:
    """Make sure hcd runs (socket activation starts it on first use); return its pid."""
    host.hc("image", "ls")
    pid = agent_pid(host)
    assert pid > 0
    return pid


# -- input files inside the dev host --------------------------------------------------------------

@dataclass(frozen=True)
class GuestDir:
    """A scratch directory inside the dev host, written from here through /proc/PID/root."""

    outside: Path  # the same directory as seen from the machine
    inside: str

    def path(self, name: str) -> tuple[Path, str]:
        return self.outside / name, f"{self.inside}/{name}"

    def write(self, name: str, data: bytes) -> str:
        outside, inside = self.path(name)
        outside.write_bytes(data)
        return inside


def tar_bytes(members: dict[str, bytes], mode: Literal["w", "w:gz"] = "w") -> bytes:
    """A tarball of regular files ``name -> content`` (names are kept as given, even unsafe)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ROOTFS = {"etc/os-release": b"ID=test\n", "bin/sh": b"#!/not/really\n"}


@pytest.fixture
def scratch(devhost: DevHost) -> Iterator[GuestDir]:
    inside = f"/tmp/hct-inputs-{uuid.uuid4().hex[:8]}"
    devhost.run("mkdir", inside)
    yield GuestDir(guest_file(devhost, inside), inside)
    devhost.run("rm", "-rf", inside)


@pytest.fixture(scope="module")
def busybox(devhost: DevHost) -> Iterator[str]:
    """The busybox image, built through the agent (and removed again if built here)."""
    built = not any(image["name"] == "busybox" for image in devhost.hc("image", "ls", json=True))
    if built:
        devhost.hc("image", "build", "busybox", "-q")
    yield "busybox"
    if built:
        devhost.hc("image", "rm", "busybox")


# -- names ------------------------------------------------------------------------------------

BAD_NAMES = {
    "empty": ("", "image name must not be empty"),
    "64-chars": ("a" * 64, "image name 'aaaaaaaaaaaaaaaaaaaa...' is too long (64 characters, "
                           "at most 63)"),
    "slash": ("a/b", f"image name 'a/b' {INVALID}"),
    "dotdot": ("..", "image name '..' must not contain '..'"),
    "parent": ("../x", "image name '../x' must not contain '..'"),
    "inner-dotdot": ("a..b", "image name 'a..b' must not contain '..'"),
    "space": ("a b", f"image name 'a b' {INVALID}"),
    "tab": ("a\tb", f"image name 'a\\tb' {INVALID}"),
    "newline": ("a\nb", f"image name 'a\\nb' {INVALID}"),
    "control": ("a\x01b", f"image name 'a\\x01b' {INVALID}"),
    "leading-dot": (".hidden", f"image name '.hidden' {INVALID}"),
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_bad_image_names_are_refused(devhost: DevHost, scratch: GuestDir, case: str) -> None:
    name, message = BAD_NAMES[case]
    tarball = scratch.write("rootfs.tar", tar_bytes(ROOTFS))
    with leaves_host_as_it_was(devhost):
        assert hc_fails(devhost, "image", "build", "busybox", f"--name={name}") == message
        assert hc_fails(devhost, "image", "import", name, tarball) == message
        assert hc_fails(devhost, "image", "rm", name) == message


def test_a_name_that_looks_like_an_option(devhost: DevHost) -> None:
    """Refused by the agent when it gets that far; as a positional, argparse stops it first."""
    with leaves_host_as_it_was(devhost):
        assert hc_fails(devhost, "image", "build", "busybox", "--name=-x") == \
            f"image name '-x' {INVALID}"
        result = devhost.hc("image", "import", "-x", "/tmp/x.tar", check=False)
        assert result.returncode == 2
        assert "hc image import: error: the following arguments are required: path" in \
            result.stderr


# -- import sources ------------------------------------------------------------------------------

def test_import_of_a_path_that_does_not_exist(devhost: DevHost, scratch: GuestDir) -> None:
    _, missing = scratch.path("nope.tar.gz")
    with leaves_host_as_it_was(devhost):
        assert hc_fails(devhost, "image", "import", "nope", missing) == \
            f"no such file or directory: {missing}"
        # A relative path is the caller's: the CLI makes it absolute (here from /).
        assert hc_fails(devhost, "image", "import", "nope", "no/such/dir") == \
            "no such file or directory: /no/such/dir"


def _half_of_a_tar_gz() -> bytes:
    whole = tar_bytes({**ROOTFS, "big": os.urandom(1 << 20)}, "w:gz")
    return whole[:len(whole) // 2]


def _tar_gz_with_bytes_flipped() -> bytes:
    """Whole, but with bytes in the middle changed: only gzip's CRC at the end can tell."""
    data = bytearray(tar_bytes({**ROOTFS, "big": os.urandom(1 << 20)}, "w:gz"))
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    return bytes(data)


def _plain_tar_cut_between_members() -> bytes:
    return tar_bytes({**ROOTFS, "etc/hostname": b"x\n"})[:3 * 512]


NOT_A_TARBALL = (f"is neither a directory nor a tarball ({FORMATS}) nor a VM disk (qcow2, or raw "
                 "with a partition table)")
CORRUPT = "is not a valid tarball (truncated or corrupt): "
BAD_SOURCES = {
    "empty-file": (lambda: b"", NOT_A_TARBALL),
    "text": (lambda: b"this is not a tarball\n" * 100, NOT_A_TARBALL),
    "random-bytes": (lambda: os.urandom(64 << 10), NOT_A_TARBALL),
    "gzip-magic-then-garbage": (lambda: b"\x1f\x8b" + os.urandom(64 << 10), CORRUPT),
    "truncated-tar-gz": (_half_of_a_tar_gz, CORRUPT),
    "corrupt-tar-gz": (_tar_gz_with_bytes_flipped, CORRUPT),
    "truncated-plain-tar": (_plain_tar_cut_between_members, CORRUPT),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_import_of_a_bad_file(devhost: DevHost, scratch: GuestDir, case: str) -> None:
    make, expected = BAD_SOURCES[case]
    source = scratch.write("rootfs.tar.gz", make())  # the name says tarball; the bytes decide
    with leaves_host_as_it_was(devhost):
        message = hc_fails(devhost, "image", "import", "bad", source)
    assert message.startswith(f"{source} {expected}"), message
    assert len(message) < 300 and "\n" not in message


def test_import_of_a_special_file(devhost: DevHost) -> None:
    with leaves_host_as_it_was(devhost):
        assert hc_fails(devhost, "image", "import", "null", "/dev/null") == \
            f"/dev/null {NOT_A_TARBALL}"


@pytest.mark.parametrize("member,reason", [
    ("ABSOLUTE", "its path is absolute"),
    ("../evil", "its path contains '..'"),
    ("../../evil", "its path contains '..'"),
    ("etc/../../../evil", "its path contains '..'"),
])
def test_import_of_a_tarball_with_unsafe_members(devhost: DevHost, scratch: GuestDir,
                                                 member: str, reason: str) -> None:
    """Good members first (written into the partial dataset), then the bad one: the import
    stops there, removes what it wrote and writes nothing outside the dataset."""
    _, outside = scratch.path("outside")
    devhost.run("mkdir", outside)
    member = member.replace("ABSOLUTE", f"{outside}/abs")
    tarball = scratch.write("evil.tar", tar_bytes({**ROOTFS, member: b"owned\n"}))
    with leaves_host_as_it_was(devhost):
        assert hc_fails(devhost, "image", "import", "evil", tarball) == \
            f"refusing to import {tarball}: unsafe member {member!r}: {reason}"
    assert devhost.run("ls", "-A", outside).stdout == ""
    for target in (f"{IMAGES}/evil", f"{POOL}/evil", f"{STATE_DIR}/evil", "/evil", "/tmp/evil"):
        assert not exists(devhost, target), f"{target} was written"


def test_import_into_an_existing_name(devhost: DevHost, busybox: str, scratch: GuestDir) -> None:
    tarball = scratch.write("rootfs.tar", tar_bytes(ROOTFS))
    with leaves_host_as_it_was(devhost):
        assert hc_fails(devhost, "image", "import", busybox, tarball) == \
            f"image {busybox!r} already exists; remove it first with `hc image rm {busybox}`"


# -- build, remove ---------------------------------------------------------------------------------

def test_building_an_image_that_exists(devhost: DevHost, busybox: str) -> None:
    with leaves_host_as_it_was(devhost) as before:
        assert hc_fails(devhost, "image", "build", "busybox") == \
            "image 'busybox' already exists; remove it first with `hc image rm busybox`"
    assert busybox in [image["name"] for image in before.images]


def test_unknown_recipe_and_missing_image(devhost: DevHost) -> None:
    with leaves_host_as_it_was(devhost):
        assert hc_fails(devhost, "image", "build", "alpine") == \
            "unknown recipe 'alpine'; known recipes: busybox, debian, postgres"
        assert hc_fails(devhost, "image", "rm", "nope") == \
            "no image named 'nope'; see `hc image ls`, or build one with `hc image build nope`"


def test_removing_an_image_in_use(devhost: DevHost, busybox: str) -> None:
    with leaves_host_as_it_was(devhost) as before:
        run = devhost.hc("run", busybox, "--name", "user1", "-d", "--", "sleep", "300")
        try:
            assert run.stdout.strip() == "user1"
            assert hc_fails(devhost, "image", "rm", busybox) == \
                f"image {busybox!r} is in use by user1; remove it first with `hc rm`"
            assert devhost.hc("image", "ls", json=True) == before.images
            assert exists(devhost, f"{IMAGES}/{busybox}/bin/busybox")
            [user1] = [i for i in devhost.hc("ls", json=True) if i["name"] == "user1"]
            assert (user1["image"], user1["state"]) == (busybox, "running")
        finally:
            devhost.hc("rm", "-f", "user1", check=False)


# -- a full pool ---------------------------------------------------------------------------------

def test_pool_full_during_import(small_pool_devhost: DevHost) -> None:
    host = small_pool_devhost
    pool = host.hc("pool", json=True)
    assert (pool["driver"], pool["size"]) == ("btrfs", parse_size("200M"))
    source = f"/tmp/hct-big-{uuid.uuid4().hex[:8]}"
    # Incompressible data, more than the whole pool.
    host.run("sh", "-c", f"mkdir {source} && head -c 256M /dev/urandom > {source}/big.bin && "
                         f"tar -C {source} -cf {source}.tar big.bin && rm -r {source}")
    try:
        with leaves_host_as_it_was(host):
            message = hc_fails(host, "image", "import", "big", f"{source}.tar")
        prefix, _, rest = message.partition(" free): ")
        assert prefix.startswith(f"the pool at {POOL} is full ("), message
        assert rest == f"could not import image big; {FULL_HINT}"
        assert not exists(host, f"{IMAGES}/big")
    finally:
        host.run("rm", "-rf", source, f"{source}.tar")


# -- the agent itself ------------------------------------------------------------------------------

def test_a_second_agent_refuses_to_start(devhost: DevHost) -> None:
    pid = start_agent(devhost)
    result = devhost.run(devhost.spec.venv_bin / "hcd", check=False, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (f"hcd: another hcd is already running (pid {pid}); stop it first "
                             "with `systemctl stop hcd`\n")
    # The first one is untouched: same process, its lock and socket kept, still answering.
    assert agent_pid(devhost) == pid
    assert devhost.run("cat", "/run/homecloud/hcd.lock").stdout == f"{pid}\n"
    assert devhost.run("stat", "-c", "%F", SOCKET).stdout.strip() == "socket"
    assert devhost.hc("image", "ls").returncode == 0


def test_without_the_agent_the_cli_says_the_host_lacks_it(devhost: DevHost) -> None:
    start_agent(devhost)
    devhost.run("systemctl", "stop", "hcd.socket")  # stops hcd.service too (Requires=)
    try:
        assert agent_pid(devhost) == 0 and not exists(devhost, SOCKET)
        assert hc_fails(devhost, "image", "ls", code=3) == (
            f"the homecloud agent is not running (no socket at {SOCKET}); start it with "
            "`systemctl start hcd.socket`")
    finally:
        devhost.run("systemctl", "start", "hcd.socket")
    assert devhost.hc("image", "ls").returncode == 0
    assert agent_pid(devhost) > 0


def _socket_mode(host: DevHost) -> str:
    return host.run("stat", "-c", "%a %U:%G", SOCKET).stdout.strip()


def test_a_user_outside_the_homecloud_group_is_refused(devhost: DevHost) -> None:
    start_agent(devhost)
    assert _socket_mode(devhost) == "660 root:homecloud"
    group_before = devhost.run("getent", "group", "homecloud").stdout
    devhost.run("useradd", "--no-create-home", STRANGER)
    try:
        uid = devhost.run("id", "-u", STRANGER).stdout.strip()
        with leaves_host_as_it_was(devhost):
            # The file mode is the first gate...
            assert hc_fails(devhost, "image", "ls", user=STRANGER) == (
                f"permission denied on {SOCKET}: run as root or join the 'homecloud' group")
            # ...the agent's check of the peer's credentials the second.
            devhost.run("chmod", "666", SOCKET)
            assert hc_fails(devhost, "image", "ls", user=STRANGER) == (
                f"permission denied: uid {uid} may not use homecloud; run as root or join the "
                "'homecloud' group")
            assert hc_fails(devhost, "image", "build", "busybox", "--name", "x",
                            user=STRANGER).startswith(f"permission denied: uid {uid} ")
            devhost.run("chmod", "660", SOCKET)
            # A member of the group (as a supplementary group) may.
            devhost.run("usermod", "--append", "--groups", "homecloud", STRANGER)
            listed = devhost.hc("image", "ls", json=True, user=STRANGER)
            assert listed == devhost.hc("image", "ls", json=True)
    finally:
        devhost.run("chmod", "660", SOCKET)
        devhost.run("userdel", STRANGER, check=False)
    assert _socket_mode(devhost) == "660 root:homecloud"
    assert devhost.run("getent", "group", "homecloud").stdout == group_before


# Run inside the dev host with Debian's python: send stdin as one request on a raw connection,
# print the status and the JSON body.
RAW_REQUEST = r"""
import json, socket, sys
request = sys.stdin.buffer.read()
with socket.socket(socket.AF_UNIX) as sock:
    sock.connect(sys.argv[1])
    try:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the agent answered and hung up before reading it all (too large)
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:
        pass  # after the reply: the kernel's word for "hung up with our request unread"
head, _, body = reply.partition(b"\r\n\r\n")
print(json.dumps({"status": int(head.split(b" ")[1]), "body": json.loads(body)}))
"""


def raw_request(host: DevHost, head: str, body: str = "") -> tuple[int, Any]:
    if body or head.startswith(("POST", "PUT")):
        head += f"Content-Length: {len(body.encode())}\r\n"
    request = head + "Connection: close\r\n\r\n" + body
    out = host.run("python3", "-c", RAW_REQUEST, SOCKET, input=request, timeout=60).stdout
    reply = json.loads(out)
    return reply["status"], reply["body"]


def _error(message: str) -> dict[str, Any]:
    return {"error": message, "kind": "invalid", "exit_code": 1}


def test_malformed_and_oversized_requests_on_the_real_socket(devhost: DevHost) -> None:
    pid = start_agent(devhost)
    post = "POST /v1/images/import HTTP/1.1\r\nHost: hcd\r\nContent-Type: application/json\r\n"
    big = 2 << 20  # the agent takes at most 1 MiB
    with leaves_host_as_it_was(devhost):
        assert raw_request(devhost, post, '{"name": "x", ') == (400, _error(
            "request body is not valid JSON: Expecting property name enclosed in double "
            "quotes: line 1 column 15 (char 14)"))
        assert raw_request(devhost, post, "not json") == (400, _error(
            "request body is not valid JSON: Expecting value: line 1 column 1 (char 0)"))
        assert raw_request(devhost, post, "[1, 2]") == (400, _error(
            "request body must be a JSON object"))
        assert raw_request(devhost, post, '{"name": 7, "path": "/x"}') == (400, _error(
            "field 'name' must be string, not integer"))
        assert raw_request(devhost, post, '{"name": "x", "path": "' + "a" * big + '"}') == (
            413, _error(f"request body of {big + 25} bytes is larger than the 1048576 bytes "
                        "allowed"))
        # Only the length is announced: refused before anything is read.
        huge = post + f"Content-Length: {1 << 40}\r\n"
        assert raw_request(devhost, huge) == (413, _error(
            f"request body of {1 << 40} bytes is larger than the 1048576 bytes allowed"))
        status, body = raw_request(devhost, "GARBAGE\r\n")
        assert (status, body["kind"]) == (400, "invalid")
        assert body["error"].startswith("bad request: ")
        assert raw_request(devhost, "GET /v1/nothing HTTP/1.1\r\n") == (404, {
            "error": "no such API path: /v1/nothing", "kind": "not-found", "exit_code": 1})
        assert raw_request(devhost, "PUT /v1/images HTTP/1.1\r\n") == (405, _error(
            "PUT is not allowed on /v1/images (allowed: GET)"))
    # The same agent goes on serving.
    assert agent_pid(devhost) == pid
    assert raw_request(devhost, "GET /v1/images HTTP/1.1\r\n") == (
        200, devhost.hc("image", "ls", json=True))


# Every route the agent serves now; the lead adds new ones here as they come.
ROUTES = {
    ("get", "/v1/version"), ("get", "/v1/pool"), ("get", "/v1/images"),
    ("get", "/v1/images/{name}"), ("post", "/v1/images/build"), ("post", "/v1/images/import"),
    ("delete", "/v1/images/{name}"), ("get", "/openapi.json"),
    ("get", "/v1/instances"), ("post", "/v1/instances"), ("get", "/v1/instances/{name}"),
    ("post", "/v1/instances/{name}/start"), ("post", "/v1/instances/{name}/stop"),
    ("post", "/v1/instances/{name}/restart"), ("delete", "/v1/instances/{name}"),
    ("post", "/v1/instances/{name}/exec"), ("get", "/v1/instances/{name}/logs"),
}


def test_openapi_description_lists_every_route(devhost: DevHost) -> None:
    status, document = raw_request(devhost, "GET /openapi.json HTTP/1.1\r\n")
    assert status == 200
    assert document["openapi"] == "3.1.0"
    version = raw_request(devhost, "GET /v1/version HTTP/1.1\r\n")[1]
    assert document["info"]["title"] and document["info"]["version"] == version["version"]
    routes = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes >= ROUTES, ROUTES - routes
    operation_ids = []
    for path, item in document["paths"].items():
        params = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for method, operation in item.items():
            assert method in ("get", "post", "put", "patch", "delete")
            assert operation["summary"] and operation["responses"]["200"]["description"]
            assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == params
            assert all(p["required"] for p in operation["parameters"] if p["in"] == "path")
            if "requestBody" in operation:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                assert schema["type"] == "object"
                assert set(schema["required"]) <= set(schema["properties"])
            error = operation["responses"]["default"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}
            operation_ids.append(operation["operationId"])
    assert len(operation_ids) == len(set(operation_ids))
    assert set(document["components"]["schemas"]["Error"]["required"]) == {
        "error", "kind", "exit_code"}


def test_agent_restart_reconciles(devhost: DevHost, scratch: GuestDir) -> None:
    """Left by a crash: a partial dataset (removed), an image dataset with no row (adopted) and
    a row whose dataset is gone (forgotten)."""
    tarball = scratch.write("rootfs.tar", tar_bytes(ROOTFS))
    before = host_state(devhost)
    devhost.hc("image", "import", "-q", "hct-lost", tarball)
    devhost.run("btrfs", "-q", "subvolume", "delete", f"{IMAGES}/hct-lost")
    devhost.run("btrfs", "-q", "subvolume", "create", f"{IMAGES}/.partial-x")
    devhost.run("btrfs", "-q", "subvolume", "create", f"{IMAGES}/hct-orphan")
    devhost.run("cp", f"{scratch.inside}/rootfs.tar", f"{IMAGES}/hct-orphan/")
    old_pid = start_agent(devhost)
    try:
        devhost.run("systemctl", "restart", "hcd.service")
        pid = agent_pid(devhost)
        assert pid not in (0, old_pid)
        assert not exists(devhost, f"{IMAGES}/.partial-x")
        images = {image["name"]: image for image in devhost.hc("image", "ls", json=True)}
        assert "hct-lost" not in images
        orphan = images.pop("hct-orphan")
        assert (orphan["source"], orphan["dataset"], orphan["path"]) == (
            "adopted", "images/hct-orphan", f"{IMAGES}/hct-orphan")
        assert orphan["size_bytes"] >= len(tar_bytes(ROOTFS))
        # What was there before is untouched (datasets other tests made may be adopted too).
        assert {image["name"]: image for image in before.images}.items() <= images.items()
        log = devhost.run("journalctl", f"_PID={pid}", "-o", "cat", "--no-pager").stdout
        assert "reconcile: removed partial: images/.partial-x" in log
        assert "reconcile: forgotten images: hct-lost" in log
        assert "hct-orphan" in log
        devhost.hc("image", "rm", "hct-orphan")
    finally:
        devhost.run("btrfs", "-q", "subvolume", "delete", f"{IMAGES}/.partial-x",
                    f"{IMAGES}/hct-orphan", check=False)
    after = host_state(devhost)
    assert after.partials == [] and after.units == before.units
    assert [i for i in after.images if i["name"].startswith("hct-")] == []
    assert not exists(devhost, f"{IMAGES}/hct-orphan") and not exists(devhost, f"{IMAGES}/hct-lost")


# -- listings ------------------------------------------------------------------------------------

def test_pool_shows_driver_path_size_used_free(devhost: DevHost) -> None:
    pool = devhost.hc("pool", json=True)
    size = int(devhost.run("stat", "-c", "%s", POOL_IMAGE).stdout)
    assert (pool["driver"], pool["path"], pool["size"], pool["fast_fork"]) == (
        "btrfs", POOL, size, True)
    assert 0 < pool["used"] < size and 0 < pool["free"] < size
    assert pool["used"] + pool["free"] == size
    header, row = devhost.hc("pool").stdout.splitlines()
    assert header.split() == ["DRIVER", "PATH", "SIZE", "USED", "FREE"]
    assert row.split()[:3] == ["btrfs", POOL, format_size(size)]
    assert len(row.split()) == 5


def test_image_ls_json_and_table(devhost: DevHost, busybox: str) -> None:
    images = devhost.hc("image", "ls", json=True)
    [image] = [image for image in images if image["name"] == busybox]
    assert set(image) == {"name", "dataset", "source", "created", "size_bytes", "path", "vm",
                          "machines", "bare_metal"}
    assert (image["vm"], image["machines"], image["bare_metal"]) == (False, [], False)
    assert (image["dataset"], image["source"], image["path"]) == (
        f"images/{busybox}", "build:busybox", f"{IMAGES}/{busybox}")
    assert image["size_bytes"] > 0 and image["created"] > 0
    # Images are read-only datasets.
    ro = devhost.run("btrfs", "property", "get", "-ts", image["path"], "ro").stdout.strip()
    assert ro == "ro=true"
    assert devhost.hc("image", "ls", "--json", json=False).stdout == \
        json.dumps(images, indent=2, sort_keys=True) + "\n"
    lines = devhost.hc("image", "ls").stdout.splitlines()
    assert lines[0].split() == ["NAME", "BOOTS", "SIZE", "SOURCE", "CREATED"]
    [row] = [line.split() for line in lines[1:] if line.split()[0] == busybox]
    assert row[:4] == [busybox, "container", format_size(image["size_bytes"]), "build:busybox"]
    assert len(lines) == len(images) + 1
