"""The directories shipped with homecloud: systemd units, service sets, cloud-init templates.

They sit at the top of the repository and are installed as package data under homecloud/_data/
(links to them in a checkout, copies in a wheel), so this one place finds them both in an
editable install and in an installed wheel.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED = ("units", "service-sets", "cloud-init")


def shipped_dir(name: str) -> Path:
    """The installed directory ``name`` (one of SHIPPED)."""
    if name not in SHIPPED:
        raise ValueError(f"homecloud ships no directory {name!r} (it ships {', '.join(SHIPPED)})")
    directory = resources.files("homecloud") / "_data" / name
    # homecloud is installed as files (pip never zips a package): a plain path, which systemd
    # units and error messages can name.
    assert isinstance(directory, Path), directory
    return directory
