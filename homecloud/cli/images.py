"""`hc image ...`: build, import, list and remove images."""

from __future__ import annotations

import argparse
import os

from homecloud.cli.lazy import api, follow, print_json, print_table
from homecloud.cli.parsers import progress_options, show_progress

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any) -> None:
    image = commands.add_parser("image", help="build, import, list and remove images",
                                description="Images are read-only datasets that instances "
                                "are forked from.")
    sub = image.add_subparsers(dest="image_command", metavar="ACTION")
    sub.required = True

    build = sub.add_parser("build", help="build an image from a recipe (debian, busybox)",
                           description="Build an image. Recipes: debian (debootstrap minbase "
                           "with systemd, from this machine's Debian mirror), busybox (tiny, "
                           "for tests).")
    build.add_argument("recipe", help="recipe to build: debian or busybox")
    build.add_argument("--name", help="image name (default: the recipe's name)")
    build.add_argument("--release", help="distribution release (debian: default bookworm)")
    build.add_argument("--mirror", help="package mirror URL (default: from apt's sources)")
    build.add_argument("--vm", action="store_true",
                       help="make an image that boots as a VM (debian; default name: "
                       "RECIPE-vm)")
    build.add_argument("--machine", action="store_true",
                       help="make an image that homecloud installs on bare machines (debian; "
                       "default name: RECIPE-machine; see `hc machine add`)")
    build.add_argument("--cloud-init", action="store_true",
                       help="with --vm: install cloud-init in the guest")
    build.add_argument("--json", action="store_true", help="print the new image as JSON")
    progress_options(build)
    build.set_defaults(run=build_image)

    imp = sub.add_parser("import", help="import a rootfs tarball or directory, or a VM disk",
                         description="Import a root file system as an image: a directory or a "
                         "tarball (.tar, .tar.gz, .tar.xz, .tar.zst, .tar.bz2); or a VM disk "
                         "(qcow2, or raw with a partition table) as an image that boots as a "
                         "q35 VM.")
    imp.add_argument("name", help="image name")
    imp.add_argument("path", help="tarball, directory or disk image on this host")
    imp.add_argument("--json", action="store_true", help="print the new image as JSON")
    progress_options(imp)
    imp.set_defaults(run=import_image)

    ls = sub.add_parser("ls", help="list images")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(run=list_images)

    rm = sub.add_parser("rm", help="remove an image (refused while an instance uses it)")
    rm.add_argument("name", nargs="+", help="image name(s)")
    rm.set_defaults(run=remove_images)


def _done(args: argparse.Namespace, verb: str, image: dict[str, Any]) -> int:
    if args.json:
        print_json(image)
    else:
        from homecloud.sizes import format_size

        print(f"{verb} image {image['name']} ({format_size(image['size_bytes'])})")
    return 0


def build_image(args: argparse.Namespace) -> int:
    # `--name ""` is a (bad) name the agent refuses, not a request for the default.
    suffix = "-machine" if args.machine else "-vm" if args.vm else ""
    name = args.recipe + suffix if args.name is None else args.name
    body = {"recipe": args.recipe, "name": name, "release": args.release, "mirror": args.mirror}
    if args.vm or args.cloud_init:  # older agents know neither field
        body.update(vm=args.vm, cloud_init=args.cloud_init)
    if args.machine:
        body["machine"] = True
    stream = api().stream("POST", "/v1/images/build", body)
    image = follow(stream, f"building {body['name']}", show=show_progress(args))
    return _done(args, "built", image)


def import_image(args: argparse.Namespace) -> int:
    body = {"name": args.name, "path": os.path.abspath(args.path)}
    stream = api().stream("POST", "/v1/images/import", body)
    image = follow(stream, f"importing {args.name}", show=show_progress(args))
    return _done(args, "imported", image)


def boots_as(image: dict[str, Any]) -> str:
    """"container", "container,machine" (also installs on a bare machine), or "vm:microvm,q35"
    (the machine types): what `hc run` and `hc machine add` make of it."""
    if not image.get("vm"):
        return "container,machine" if image.get("bare_metal") else "container"
    return "vm:" + ",".join(image.get("machines") or ())


def list_images(args: argparse.Namespace) -> int:
    images = api().call("GET", "/v1/images")
    if args.json:
        print_json(images)
        return 0
    from homecloud.cli.output import ago
    from homecloud.sizes import format_size

    print_table([[i["name"], boots_as(i), format_size(i["size_bytes"]), i["source"],
                  ago(i["created"])] for i in images],
                ["NAME", "BOOTS", "SIZE", "SOURCE", "CREATED"])
    return 0


def remove_images(args: argparse.Namespace) -> int:
    client = api()
    for name in args.name:
        from homecloud.client.paths import quoted

        client.call("DELETE", f"/v1/images/{quoted(name)}")
        print(f"removed image {name}")
    return 0
