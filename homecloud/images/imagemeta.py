"""What a container image says about the instances made from it, in its own tree
(``usr/lib/homecloud/image.json``, vendor data beside the image's other files in /usr/lib):

    {"service_set": "postgres"}    # its containers are created by service-sets/postgres.yaml

A recipe writes it; an imported tree may bring one. Read without following the tree's links
(an imported image is not trusted), and refused in one line when it is not what it should be.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from homecloud.errors import UserError
from homecloud.names import validate_name

META_PATH = "usr/lib/homecloud/image.json"
MAX_META = 64 << 10


@dataclass(frozen=True)
class ImageMeta:
    service_set: str | None = None  # the service set its booted containers are made by

    def to_json(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def read_image_meta(root: Path) -> ImageMeta:
    """The metadata of the image tree at ``root``; empty when it has none."""
    path = root
    for part in Path(META_PATH).parts:
        path = path / part
        if path.is_symlink():
            raise UserError(f"image metadata /{META_PATH} must be a plain file, not a symlink")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_META + 1)
    except (FileNotFoundError, NotADirectoryError):
        return ImageMeta()
    if len(raw) > MAX_META:
        raise UserError(f"image metadata /{META_PATH} is larger than {MAX_META} bytes")
    try:
        data = json.loads(raw)
    except ValueError:
        raise UserError(f"image metadata /{META_PATH} is not valid JSON") from None
    if not isinstance(data, dict):
        raise UserError(f"image metadata /{META_PATH} must be a JSON object")
    service_set = data.get("service_set")
    if service_set is not None:
        if not isinstance(service_set, str):
            raise UserError(f"image metadata /{META_PATH}: service_set must be a string")
        validate_name(service_set, "service set")
    return ImageMeta(service_set=service_set)


def write_image_meta(root: Path, meta: ImageMeta) -> None:
    path = root / META_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta.to_json(), indent=2) + "\n")
