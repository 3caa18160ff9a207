"""homecloud's network-boot processes.

    python -m homecloud.provision serve         the provisioning HTTP server (hc-provision)
    python -m homecloud.provision dhcp-config   write dnsmasq's configuration (hc-dhcp runs it
                                                before dnsmasq starts)
Both copy the iPXE binaries they serve into homecloud's boot directory first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from homecloud.config import Config, load_config
from homecloud.errors import exit_status
from homecloud.machines.records import MachineRecords
from homecloud.provision.server import ImageWriter
from homecloud.state.store import Store
from homecloud.systemd.activation import notify

if TYPE_CHECKING:
    from homecloud.provision.answers import ImageFacts


def _image_writer(config: Config, compress: bool) -> ImageWriter:
    """Streams of the images in homecloud's pool, made by the installer's transport."""
    from homecloud.images.catalog import image_dataset
    from homecloud.provision.image_stream import write_image_stream, write_rootfs
    from homecloud.storage.pool import open_pool

    pool = open_pool(config.pool)

    def write(kind: str, image: str, out: BinaryIO) -> None:
        path = pool.path(image_dataset(image))
        (write_image_stream if kind == "image" else write_rootfs)(path, out, compress)

    return write


def _image_facts(config: Config) -> Callable[[str], ImageFacts]:
    """An image's facts from homecloud's catalog: its size lets the installer refuse a disk
    too small before partitioning it."""
    from homecloud.errors import NotFound
    from homecloud.images.catalog import ImageCatalog
    from homecloud.provision.answers import ImageFacts
    from homecloud.storage.pool import open_pool

    catalog = ImageCatalog(Store(config.database_path), open_pool(config.pool))

    def facts(name: str) -> ImageFacts:
        try:
            return ImageFacts(name, size=catalog.get(name).size_bytes)
        except NotFound:  # removed since: its stream says so
            return ImageFacts(name)

    return facts


def stage_boot_files(config: Config) -> Path:
    """The iPXE binaries copied into homecloud's boot directory (boot_files.py); what could not
    be copied is said in the unit's log, and the rest serves."""
    from homecloud.machines.boot_files import stage_boot_files as stage

    boot_dir = config.state_dir / "boot"
    for staged in stage(boot_dir):
        if staged.problem:
            print(f"{staged.name} cannot be served: {staged.problem}", file=sys.stderr,
                  flush=True)
    return boot_dir


def serve(listen: str | None) -> None:
    from homecloud.provision.answers import ProvisionAnswers
    from homecloud.provision.image_stream import encoding
    from homecloud.provision.server import ProvisionServer
    from homecloud.provision.settings import current_settings

    config = load_config()
    records = MachineRecords(Store(config.database_path))
    settings = current_settings(records)
    host, port = str(settings.address.ip), settings.port
    if listen:
        host, _, port_text = listen.rpartition(":")
        port = int(port_text)
    # On homecloud's own bridge the machines are this host's VMs: compressing costs CPU on
    # both ends and saves nothing (image_stream.py).
    compress = settings.interface != config.network.bridge
    answers = ProvisionAnswers(records, settings.url,
                               log=lambda line: print(line, file=sys.stderr, flush=True),
                               image_encoding=encoding(compress),
                               image_facts=_image_facts(config))
    server = ProvisionServer((host, port), answers, config.state_dir / "installer",
                             _image_writer(config, compress), boot_dir=stage_boot_files(config))
    print(f"serving network boot on http://{host}:{port}", file=sys.stderr, flush=True)
    notify(ready=1)
    server.serve_forever()


def dhcp_config() -> None:
    from homecloud.provision.settings import write_dhcp_config

    config = load_config()
    write_dhcp_config(MachineRecords(Store(config.database_path)), stage_boot_files(config))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m homecloud.provision",
                                     description="homecloud's network boot")
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="the provisioning HTTP server")
    serving.add_argument("--listen", help="ADDRESS:PORT instead of the interface's")
    commands.add_parser("dhcp-config", help="write dnsmasq's configuration")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return exit_status("hc-provision", lambda: serve(args.listen))
    return exit_status("hc-dhcp", dhcp_config)


if __name__ == "__main__":
    sys.exit(main())
