"""Which kernel modules the installer carries, and the order it loads them in (pure).

Debian's kernel package ships its modules without modules.dep (depmod writes it at install
time), so the dependencies are read from each module's own ``.modinfo`` section: the
``depends=`` string the kernel build records there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_DEPENDS = re.compile(rb"(?:^|\x00)depends=([^\x00]*)\x00")


def module_name(file_name: str) -> str:
    """The name a module is known by: its file name without .ko, dashes as underscores."""
    return file_name.split(".ko", 1)[0].replace("-", "_")


def module_depends(data: bytes) -> tuple[str, ...]:
    """The modules a module's bytes say it needs (its .modinfo ``depends=``)."""
    found = _DEPENDS.search(data)
    if found is None or not found.group(1):
        return ()
    return tuple(module_name(name) for name in found.group(1).decode().split(","))


def load_order(wanted: Iterable[str], depends: Mapping[str, tuple[str, ...]]) -> list[str]:
    """``wanted`` (names the kernel has as modules) and everything they need, each after its
    dependencies. Names the kernel lacks as modules are left out: built in, or not there."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name not in depends:
            return
        if name in visiting:
            raise ValueError(f"kernel modules depend on each other in a circle through {name}")
        visiting.add(name)
        for needed in depends[name]:
            visit(needed)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(module_name(name))
    return order
