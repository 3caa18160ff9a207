"""Small file helpers shared by the set-up, storage and definition-loading code."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write ``text`` to ``path`` atomically unless it already holds exactly that; True if
    written. Unit files go through this, so an unchanged unit costs no daemon-reload."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def read_first_yaml(paths: Iterable[Path]) -> tuple[Path, Any] | None:
    """The first of ``paths`` that exists, parsed as YAML; None if none does. A file that is
    not valid YAML is a UserError naming it (service sets, workflows: definitions users edit)."""
    import yaml

    from homecloud.errors import UserError

    for path in paths:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        try:
            return path, yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML: {exc}") from exc
    return None
