"""Bring homecloud up on a Debian 12 machine, or run its tests, from a checkout:

    python3 -m homecloud.host.bootstrap up               # README command 1
    python3 -m homecloud.host.bootstrap test [PYTEST...] # README command 2 (what CI runs)

Both install what is missing and skip what is there, so a second run is fast: the Debian
packages, the venv /opt/homecloud/venv (made with Debian's /usr/bin/python3, which dev hosts can
see) and homecloud itself, installed editable so the checkout stays live. `up` then installs the
agent (natively when PID 1 is systemd, else inside the dev host "homecloud") and runs the
first steps; `test` runs pytest on the checkout's tests.

Runs on Debian's python with the standard library only: nothing else is installed yet.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEBIAN_PACKAGES = (
    "systemd-container", "btrfs-progs", "debootstrap", "libsystemd-dev", "libbtrfsutil-dev",
    "pkg-config", "gcc", "python3-dev", "python3-venv", "nftables", "busybox-static", "zstd",
    "xz-utils", "dnsutils", "dbus", "xfsprogs", "util-linux", "iproute2",
    # VMs: qemu (microvm, q35) and its disk tool, UEFI firmware, TPM, libvirt (and its headers
    # for libvirt-python); building VM images without mounting: ext4 from a directory, a GPT
    # disk (sfdisk, in fdisk) with a FAT EFI system partition (mkfs.vfat, mtools).
    "qemu-system-x86", "qemu-utils", "ovmf", "swtpm", "swtpm-tools", "libvirt-daemon-system",
    "libvirt-dev", "e2fsprogs", "fdisk", "dosfstools", "mtools",
    # The front door: Debian's nginx (built with auth_request) and openssl for its certificate.
    "nginx", "openssl",
    # Lambda benchmarks: wrk for throughput, fcgiwrap for the classic process-per-request setup.
    "wrk", "fcgiwrap",
    # Browser tests of the door's pages: Chromium, driven by Playwright from the venv.
    "chromium",
    # Consoles in the browser: noVNC's files (served by the door), and websockify, the
    # yardstick of bench/console_bench.py.
    "novnc", "python3-websockify",
    # Postgres tests: psql on the host, to an instance by name.
    "postgresql-client",
    # Bare metal: dnsmasq for DHCP/TFTP (the binary only, no machine-wide service) and iPXE's
    # binaries for plain PXE ROMs (undionly.kpxe for BIOS, ipxe.efi for UEFI).
    "dnsmasq-base", "ipxe",
    # The machine installer's initramfs carries these (homecloud/machines/installer/build.py).
    "extlinux", "jq",
)
# Browser terminals: xterm.js from npm (Debian's libjs-xterm ships an unbundled build), kept
# beside the venv, where homecloud's nginx configuration finds it (homecloud/consoles).
NPM_PACKAGES = ("@xterm/xterm@5", "@xterm/addon-fit@0")
SYSTEM_PYTHON = Path("/usr/bin/python3")
DPKG_STATUS = Path("/var/lib/dpkg/status")
VENV = Path("/opt/homecloud/venv")
STAMP_NAME = ".homecloud-install.json"
DEVHOST_NAME = "homecloud"
CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FirstStep:
    """A command `up` runs once homecloud is installed (as `hc ...` on the host it runs on).
    ``done_if``, a shell command, skips the step when it succeeds, so `up` can run again."""

    argv: tuple[str, ...]
    done_if: str | None = None


# What `up` does after installing, in order: extend this list to grow the quick start.
FIRST_STEPS: tuple[FirstStep, ...] = (
    FirstStep(("hc", "image", "build", "debian"), done_if="hc image ls | grep -qw debian"),
    FirstStep(("hc", "run", "debian", "--name", "hello", "--restart", "always"),
              done_if="hc ls | grep -qw hello"),
    FirstStep(("hc", "start", "hello")),  # a no-op when it runs; after a `down --keep` it did not
    # A lambda behind the front door: a fresh sandboxed process per request to /greet.
    FirstStep(("hc", "lambda", "deploy", "greet", str(CHECKOUT / "examples" / "greet.sh"),
               "--route", "/greet"), done_if="hc lambda ls | grep -qw greet"),
    FirstStep(("hc", "ls")),
)


class BootstrapError(Exception):
    pass


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def run(argv: Sequence[str | Path], env: dict[str, str] | None = None) -> None:
    """Run a command, showing its output; a failure ends the bootstrap with one clear line."""
    args = [str(arg) for arg in argv]
    result = subprocess.run(args, check=False, env=env)
    if result.returncode != 0:
        raise BootstrapError(f"`{' '.join(args)}` failed with exit code {result.returncode}")


# --- Debian packages ---------------------------------------------------------------------------

def installed_from_dpkg(output: str) -> set[str]:
    """Parse `dpkg-query -W -f '${Package}\\t${Status}\\n'`: the fully installed packages."""
    installed = set()
    for line in output.splitlines():
        name, _, status = line.partition("\t")
        if status.split()[-1:] == ["installed"]:
            installed.add(name.split(":")[0])
    return installed


def missing_packages(wanted: Iterable[str], installed: set[str]) -> list[str]:
    return [package for package in wanted if package not in installed]


def query_installed(packages: Sequence[str]) -> set[str]:
    # Exits 1 when some package is unknown to dpkg; the output still lists the known ones.
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Status}\n", *packages],
                            capture_output=True, text=True, check=False)
    return installed_from_dpkg(result.stdout)


def ensure_packages(packages: Sequence[str] = DEBIAN_PACKAGES) -> None:
    if not DPKG_STATUS.exists():
        # A dev host: the machine's /usr without its /var. Its packages are the machine's.
        say(f"Debian packages: no {DPKG_STATUS} here, not checking")
        return
    missing = missing_packages(packages, query_installed(packages))
    if not missing:
        say("Debian packages: all present")
        return
    require_root(f"installing {' '.join(missing)}")
    say(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


# --- the venv and homecloud in it --------------------------------------------------------------

def venv_home(venv: Path) -> str | None:
    """The `home` of a venv's pyvenv.cfg: the directory of the python it was made with."""
    try:
        config = (venv / "pyvenv.cfg").read_text()
    except FileNotFoundError:
        return None
    for line in config.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return value.strip()
    return None


def ensure_venv(venv: Path = VENV) -> None:
    home = venv_home(venv)
    if home == str(SYSTEM_PYTHON.parent) and (venv / "bin" / "python").exists():
        say(f"venv {venv}: present")
        return
    require_root(f"creating {venv}")
    if venv.exists():
        # Made with another python (dev hosts could not run it) or broken: make it again.
        say(f"replacing {venv} (it was made with {home or 'an unknown python'})")
        shutil.rmtree(venv)
    say(f"creating the venv {venv} with {SYSTEM_PYTHON}")
    run([SYSTEM_PYTHON, "-m", "venv", venv])


def install_stamp(checkout: Path, pyproject: bytes) -> dict[str, str]:
    """What an editable install depends on: where the checkout is and what pyproject says."""
    return {"checkout": str(checkout), "pyproject_sha256": hashlib.sha256(pyproject).hexdigest(),
            "editable_mode": "compat"}


def needs_install(stamp_text: str | None, expected: dict[str, str]) -> bool:
    if stamp_text is None:
        return True
    try:
        return bool(json.loads(stamp_text) != expected)
    except ValueError:
        return True


def ensure_homecloud(venv: Path = VENV, checkout: Path = CHECKOUT) -> None:
    stamp_path = venv / STAMP_NAME
    expected = install_stamp(checkout, (checkout / "pyproject.toml").read_bytes())
    try:
        stamp_text: str | None = stamp_path.read_text()
    except FileNotFoundError:
        stamp_text = None
    if not needs_install(stamp_text, expected) and (venv / "bin" / "hc-devhost").exists():
        say(f"homecloud: installed from {checkout}")
        return
    require_root(f"installing homecloud into {venv}")
    say(f"installing homecloud from {checkout} into {venv} (editable, with test tools)")
    stamp_path.unlink(missing_ok=True)
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         # compat mode: a plain path entry instead of an import hook, which costs every `hc`
         # start-up ~15 ms (pathlib and the hook's own finder).
         "--config-settings", "editable_mode=compat", "--editable", f"{checkout}[test]"])
    stamp_path.write_text(json.dumps(expected, indent=2) + "\n")


def prepare(venv: Path = VENV, checkout: Path = CHECKOUT) -> None:
    ensure_packages()
    # Where the ipxe package's files are visible, a copy for hosts that cannot see /boot (dev
    # hosts): homecloud/machines/boot_files.py.
    from homecloud.machines.boot_files import fill_shared_cache
    fill_shared_cache()
    ensure_venv(venv)
    ensure_homecloud(venv, checkout)
    ensure_npm_packages(venv)


def ensure_npm_packages(venv: Path = VENV) -> None:
    prefix = venv / "share" / "homecloud" / "npm"
    if all((prefix / "node_modules" / name.rsplit("@", 1)[0] / "package.json").exists()
           for name in NPM_PACKAGES):
        return
    if shutil.which("npm") is None:
        # Only when there is no npm at all: a machine's own Node.js (NodeSource's, say) carries
        # an npm that Debian's package would fight with.
        ensure_packages(("npm",))
        if shutil.which("npm") is None:
            say("npm is missing: browser terminals will lack xterm.js (install nodejs and npm)")
            return
    say("installing xterm.js (npm)")
    run(["npm", "install", "--no-audit", "--no-fund", "--prefix", prefix, *NPM_PACKAGES])


# --- helpers shared with hostsetup ---------------------------------------------------------------

def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise BootstrapError(f"{what} needs root: run this as root")


def systemd_booted() -> bool:
    """sd_booted(): PID 1 is systemd."""
    return Path("/run/systemd/system").is_dir()


def link_command(link_dir: Path, target: Path) -> Path | None:
    """Symlink ``target`` into ``link_dir`` (a PATH directory); None when that directory is not
    writable (a dev host's /usr/local/bin is the machine's, read-only). Refuses to replace a
    file that is not a symlink: it is somebody else's."""
    if not os.access(link_dir, os.W_OK):
        return None
    link = link_dir / target.name
    if link.is_symlink():
        if os.readlink(link) == str(target):
            return link
        link.unlink()
    elif link.exists():
        raise BootstrapError(f"{link} exists and is not homecloud's: remove it and run again")
    link.symlink_to(target)
    return link


# --- the commands ------------------------------------------------------------------------------

def run_first_steps(prefix: Sequence[str | Path], env: dict[str, str] | None = None) -> None:
    """Run FIRST_STEPS through ``prefix`` (the command that runs a command on the homecloud
    host: nothing natively, `hc-devhost exec homecloud --` for the dev host)."""
    for step in FIRST_STEPS:
        if step.done_if is not None:
            done = subprocess.run([*map(str, prefix), "sh", "-c", step.done_if], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  check=False)
            if done.returncode == 0:
                say(f"{' '.join(step.argv)}: already done")
                continue
        say(" ".join(step.argv))
        run([*prefix, *step.argv], env=env)


def cmd_up(_args: argparse.Namespace) -> int:
    prepare()
    bindir = VENV / "bin"
    if systemd_booted():
        say("installing the homecloud agent on this host")
        run([bindir / "python", "-m", "homecloud.host.setup"])
        run_first_steps([], env={**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{bindir}"})
        say("homecloud is up on this host, with a booted container 'hello' and a lambda "
            "'greet'. Try:")
        print("    hc shell hello\n    hc ls\n    hc image ls\n"
              "    hc user add me --admin && curl -k -u me https://localhost/greet")
        return 0
    say(f"PID 1 is not systemd here: starting the dev host {DEVHOST_NAME!r}")
    link = link_command(Path("/usr/local/bin"), bindir / "hc-devhost")
    devhost = str(link.name if link else bindir / "hc-devhost")
    run([bindir / "hc-devhost", "up", DEVHOST_NAME])
    run_first_steps([bindir / "hc-devhost", "exec", DEVHOST_NAME, "--"])
    say(f"homecloud is up inside the dev host {DEVHOST_NAME!r}. Next:")
    print(f"    {devhost} exec {DEVHOST_NAME} -- hc shell hello   # a shell in the container\n"
          f"    {devhost} exec {DEVHOST_NAME} -- bash      # a shell in it; there, try: hc ls\n"
          f"    {devhost} exec {DEVHOST_NAME} -- hc ls     # or one command from here\n"
          f"    (in it: hc user add me --admin && curl -k -u me https://localhost/greet)\n"
          f"    {devhost} down {DEVHOST_NAME} --keep       # stop it, keeping its state")
    return 0


def pytest_paths(pytest_args: Sequence[str], checkout: Path) -> list[str]:
    """The checkout's tests, unless the arguments name tests of their own (a file, a node id)."""
    for arg in pytest_args:
        if not arg.startswith("-") and (checkout / arg.split("::")[0]).exists():
            return []
    return [str(checkout / "tests")]


def cmd_test(args: argparse.Namespace) -> int:
    prepare()
    python = VENV / "bin" / "python"
    argv = [str(python), "-m", "pytest", *pytest_paths(args.pytest_args, CHECKOUT),
            *args.pytest_args]
    say(" ".join(argv))
    sys.stdout.flush()
    os.chdir(CHECKOUT)
    os.execv(python, argv)  # pytest's exit code becomes ours


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m homecloud.host.bootstrap",
                                     description="Install homecloud on this Debian machine and "
                                                 "start it (up), or run its tests (test).")
    sub = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")
    sub.add_parser("up", help="install and start homecloud, then run the first steps")
    sub.add_parser("test", help="install what the tests need and run pytest; the arguments "
                   "after `test` go to pytest")
    argv = sys.argv[1:] if argv is None else argv
    # Everything after `test` belongs to pytest, options included.
    args = parser.parse_args(argv[:1] if argv[:1] == ["test"] else argv)
    args.pytest_args = argv[1:]
    try:
        return cmd_up(args) if args.action == "up" else cmd_test(args)
    except BootstrapError as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
