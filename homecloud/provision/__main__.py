"""homecloud's network-boot processes.

    python -m homecloud.provision serve         the provisioning HTTP server (hc-provision)
    python -m homecloud.provision dhcp-config   write dnsmasq's configuration (hc-dhcp runs it
                                                before dnsmasq starts)
"""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO

from homecloud.config import Config, load_config
from homecloud.errors import exit_status
from homecloud.machines.records import MachineRecords
from homecloud.provision.server import ImageWriter
from homecloud.state.store import Store
from homecloud.systemd.activation import notify


def _image_writer(config: Config) -> ImageWriter:
    """Streams of the images in homecloud's pool, made by the installer's transport."""
    from homecloud.images.catalog import image_dataset
    from homecloud.provision.image_stream import write_image_stream, write_rootfs
    from homecloud.storage.pool import open_pool

    pool = open_pool(config.pool)

    def write(kind: str, image: str, out: BinaryIO) -> None:
        path = pool.path(image_dataset(image))
        (write_image_stream if kind == "image" else write_rootfs)(path, out)

    return write


def serve(listen: str | None) -> None:
    from homecloud.provision.answers import ProvisionAnswers
    from homecloud.provision.server import ProvisionServer
    from homecloud.provision.settings import current_settings

    config = load_config()
    records = MachineRecords(Store(config.database_path))
    settings = current_settings(records)
    host, port = str(settings.address.ip), settings.port
    if listen:
        host, _, port_text = listen.rpartition(":")
        port = int(port_text)
    answers = ProvisionAnswers(records, settings.url,
                               log=lambda line: print(line, file=sys.stderr, flush=True))
    server = ProvisionServer((host, port), answers, config.state_dir / "installer",
                             _image_writer(config))
    print(f"serving network boot on http://{host}:{port}", file=sys.stderr, flush=True)
    notify(ready=1)
    server.serve_forever()


def dhcp_config() -> None:
    from homecloud.provision.settings import write_dhcp_config

    config = load_config()
    write_dhcp_config(MachineRecords(Store(config.database_path)))


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
