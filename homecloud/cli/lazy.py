"""Entry points into the client and output modules, imported on first use.

Commands declare their parsers at start-up (only the one given is built: lazyparsers.py); only
the command that runs pays for the client, JSON and table code it needs (`hc --version` and
`--help` load none of it).
"""

from __future__ import annotations

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from homecloud.client.api import ApiClient


def api(timeout: float | None = None) -> ApiClient:
    """A client of the agent (the socket from $HC_SOCKET or the default); ``timeout``: seconds
    each read may wait (None: no limit)."""
    from homecloud.client.api import ApiClient

    return ApiClient(timeout=timeout)


def follow(*args: Any, **kwargs: Any) -> Any:
    from homecloud.cli.output import follow as real

    return real(*args, **kwargs)


def print_json(*args: Any, **kwargs: Any) -> None:
    from homecloud.cli.output import print_json as real

    real(*args, **kwargs)


def print_table(*args: Any, **kwargs: Any) -> None:
    from homecloud.cli.output import print_table as real

    real(*args, **kwargs)
