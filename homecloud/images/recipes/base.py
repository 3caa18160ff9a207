"""What a recipe is: options, a prepare step and a fill step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from homecloud.images.progress import ProgressCallback


@dataclass(frozen=True)
class BuildOptions:
    release: str | None = None
    mirror: str | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    # Checks the options and the host; returns them completed (default release, found mirror).
    prepare: Callable[[BuildOptions], BuildOptions]
    # Writes the image's files into an empty directory.
    fill: Callable[[Path, BuildOptions, ProgressCallback], None]
    takes: frozenset[str] = frozenset()  # which BuildOptions fields the recipe uses
