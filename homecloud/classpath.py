"""Classes named by "package.module:Class" strings.

Drivers and machines registered by name are imported only when first used: a host that never
runs a VM never imports libvirt, and one without btrfsutil can still run a reflink pool.
"""

from __future__ import annotations

import importlib
from typing import Any

from homecloud.errors import HostError


def load_class(path: str, base: type, what: str, kind_of: str, hint: str = "") -> type[Any]:
    """The class ``path`` names, which must be a subclass of ``base`` (``kind_of`` says what
    that is, e.g. "an instance driver"). HostError naming ``what``, with ``hint`` (what to do)
    after the reason, when it cannot be imported."""
    module_name, _, class_name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise HostError(f"{what} cannot load ({exc}){hint}") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise HostError(f"{path} is not {kind_of}")
    return cls
