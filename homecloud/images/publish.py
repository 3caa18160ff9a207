"""Build into a partial dataset, then publish it whole: the one way images come to exist.

Builders and importers write ``images/.partial-<name>``; only when they finish is it renamed to
``images/<name>`` and made read-only. Any failure or interruption (including an exception raised
by the progress callback, which is how the agent cancels) destroys the partial dataset, so an
image either exists complete or not at all. A partial left by a crash is removed by the agent's
reconcile pass, or by the next build of the same name.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from homecloud.errors import Conflict
from homecloud.images.catalog import image_dataset
from homecloud.names import validate_name
from homecloud.storage.base import Dataset, StorageDriver
from homecloud.storage.failures import pool_full

PARTIAL_PREFIX = ".partial-"


def partial_dataset(name: str) -> str:
    """Where image ``name`` is written while it is being built or imported."""
    prefix, leaf = image_dataset(name).rsplit("/", 1)
    return f"{prefix}/{PARTIAL_PREFIX}{leaf}"


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def out_of_space(what: str) -> OSError:
    """The error a filler raises when a tool it ran reported a full disk."""
    return OSError(errno.ENOSPC, f"{what}: no space left on device")


def check_image_absent(pool: StorageDriver, name: str) -> None:
    if pool.exists(image_dataset(name)):
        raise Conflict(f"image {name!r} already exists; remove it first with "
                       f"`hc image rm {name}`")


def publish_image(pool: StorageDriver, name: str, fill: Callable[[Dataset], None],
                  *, action: str = "build", volume_size: int | None = None) -> Dataset:
    """Create a partial dataset, let ``fill`` write the image into it, then publish it.

    ``action`` words the pool-full message ("build", "import"). With ``volume_size`` the
    partial dataset holds a sparse block volume of that many bytes (a VM image's disk; see
    ``pool.volume_path``). Returns the published, read-only dataset ``images/<name>``.
    """
    validate_name(name, "image name")
    check_image_absent(pool, name)
    partial, final = partial_dataset(name), image_dataset(name)
    # A partial of the same name is a crash's leftover: the agent holds the image name while
    # building, so no other operation is writing it.
    pool.destroy(partial)
    if volume_size is None:
        dataset = pool.create(partial)
    else:
        pool.create_volume(partial, volume_size)
        dataset = pool.get(partial)
    published = False
    try:
        fill(dataset)
        pool.rename(partial, final)
        published = True
        pool.set_readonly(final, True)
        return pool.get(final)
    except BaseException as exc:
        pool.destroy(final if published else partial)
        if is_out_of_space(exc):
            raise pool_full(pool.root, f"{action} image {name}") from exc
        raise
