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
    cloud_init: bool | None = None  # VM recipes: install cloud-init in the guest


@dataclass(frozen=True)
class BuildTarget:
    """Where a recipe writes: the partial dataset's directory, and its block volume for recipes
    that make one (VM images; the pool decides where a volume lives)."""

    root: Path
    volume: Path | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    # Checks the options and the host; returns them completed (default release, found mirror).
    prepare: Callable[[BuildOptions], BuildOptions]
    # Writes the image's files into an empty dataset (and its volume).
    fill: Callable[[BuildTarget, BuildOptions, ProgressCallback], None]
    takes: frozenset[str] = frozenset()  # which BuildOptions fields the recipe uses
    volume_size: int | None = None  # bytes of the block volume the image holds, if any
