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
from homecloud.images.recipes import busybox, debian, debian_machine, debian_vm, postgres
from homecloud.images.recipes.base import BuildOptions, BuildTarget, Recipe
from homecloud.names import validate_name
from homecloud.storage.base import Dataset, StorageDriver

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {recipe.name: recipe for recipe in (busybox.RECIPE, debian.RECIPE, postgres.RECIPE)})
# `hc image build NAME --vm`: the recipes that make VM images, by the same names.
VM_RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {recipe.name: recipe for recipe in (debian_vm.RECIPE,)})
VM_SUFFIX = "-vm"  # `hc image build debian --vm` makes the image debian-vm
# `hc image build NAME --machine`: images homecloud's installer puts on bare machines.
MACHINE_RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {recipe.name: recipe for recipe in (debian_machine.RECIPE,)})
MACHINE_SUFFIX = "-machine"


def get_recipe(name: str, *, vm: bool = False, machine: bool = False) -> Recipe:
    if vm and machine:
        raise UserError("--vm and --machine exclude each other: an image boots as one or the "
                        "other")
    if machine:
        if name not in MACHINE_RECIPES:
            raise UserError(f"recipe {name!r} makes no machine images; machine images come "
                            f"from: {', '.join(sorted(MACHINE_RECIPES))}")
        return MACHINE_RECIPES[name]
    try:
        return (VM_RECIPES if vm else RECIPES)[name]
    except KeyError:
        if vm and name in RECIPES:
            raise UserError(f"recipe {name} makes no VM images; VM images come from: "
                            f"{', '.join(sorted(VM_RECIPES))}") from None
        raise UserError(f"unknown recipe {name!r}; known recipes: "
                        f"{', '.join(sorted(RECIPES))}") from None


def default_image_name(recipe: str, vm: bool, machine: bool = False) -> str:
    if machine:
        return recipe + MACHINE_SUFFIX
    return recipe + VM_SUFFIX if vm else recipe


def _check_options(recipe: Recipe, options: BuildOptions, vm: bool) -> None:
    for option, value in vars(options).items():
        if value is not None and option not in recipe.takes:
            flag = "--" + option.replace("_", "-")
            needs_vm = not vm and option in VM_RECIPES.get(recipe.name, recipe).takes
            raise UserError(f"{flag} needs --vm" if needs_vm
                            else f"recipe {recipe.name} takes no {flag}")


def check_build(recipe: str, *, release: str | None = None, mirror: str | None = None,
                vm: bool = False, cloud_init: bool | None = None,
                machine: bool = False) -> tuple[Recipe, BuildOptions]:
    """The recipe and options a build asks for, refused in one line before anything else
    (the image name included) is looked at."""
    chosen = get_recipe(recipe, vm=vm, machine=machine)
    options = BuildOptions(release=release, mirror=mirror, cloud_init=cloud_init or None)
    _check_options(chosen, options, vm)
    return chosen, options


def build_image(pool: StorageDriver, name: str, recipe: str, *, release: str | None = None,
                mirror: str | None = None, vm: bool = False, cloud_init: bool | None = None,
                machine: bool = False,
                progress: ProgressCallback = ignore_progress) -> Dataset:
    """Build image ``name`` from ``recipe`` (its VM variant with ``vm``); return the published
    read-only dataset.

    Synchronous; the agent runs it in a worker thread. Everything that can be checked is checked
    before the partial dataset is created; on any failure (or a progress callback that raises)
    the partial dataset is destroyed.
    """
    validate_name(name, "image name")
    chosen, options = check_build(recipe, release=release, mirror=mirror, vm=vm,
                                  cloud_init=cloud_init, machine=machine)
    check_image_absent(pool, name)
    options = chosen.prepare(options)

    def fill(dataset: Dataset) -> None:
        volume = pool.volume_path(dataset.name) if chosen.volume_size else None
        chosen.fill(BuildTarget(dataset.path, volume), options, progress)

    return publish_image(pool, name, fill, volume_size=chosen.volume_size)
