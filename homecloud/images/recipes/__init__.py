"""Recipes: how `hc image build NAME` makes an image, one module per recipe.

A recipe first *prepares* (checks its options and the host, before anything is created), then
*fills* an empty directory, the partial dataset that homecloud.images.publish publishes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from homecloud.errors import UserError
from homecloud.images.progress import ProgressCallback, ignore_progress
from homecloud.images.publish import check_image_absent, publish_image
from homecloud.images.recipes import busybox, debian
from homecloud.images.recipes.base import BuildOptions, Recipe
from homecloud.names import validate_name
from homecloud.storage.base import Dataset, StorageDriver

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {recipe.name: recipe for recipe in (busybox.RECIPE, debian.RECIPE)})


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UserError(f"unknown recipe {name!r}; known recipes: "
                        f"{', '.join(sorted(RECIPES))}") from None


def _check_options(recipe: Recipe, options: BuildOptions) -> None:
    for option, value in vars(options).items():
        if value is not None and option not in recipe.takes:
            raise UserError(f"recipe {recipe.name} takes no --{option}")


def build_image(pool: StorageDriver, name: str, recipe: str, *, release: str | None = None,
                mirror: str | None = None,
                progress: ProgressCallback = ignore_progress) -> Dataset:
    """Build image ``name`` from ``recipe``; return the published read-only dataset.

    Synchronous; the agent runs it in a worker thread. Everything that can be checked is checked
    before the partial dataset is created; on any failure (or a progress callback that raises)
    the partial dataset is destroyed.
    """
    validate_name(name, "image name")
    chosen = get_recipe(recipe)
    options = BuildOptions(release=release, mirror=mirror)
    _check_options(chosen, options)
    check_image_absent(pool, name)
    options = chosen.prepare(options)
    return publish_image(pool, name, lambda dataset: chosen.fill(dataset.path, options, progress))
