"""Entry points into the client and output modules, imported on first use.

Every command registers its parser at start-up; only the command that runs pays for the client,
JSON and table code it needs (`hc --version` and `--help` load none of it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homecloud.cli.client import ApiClient


def api() -> ApiClient:
    """A client of the agent (the socket from $HC_SOCKET or the default)."""
    from homecloud.cli.client import ApiClient

    return ApiClient()


def follow(*args: Any, **kwargs: Any) -> Any:
    from homecloud.cli.output import follow as real

    return real(*args, **kwargs)


def print_json(*args: Any, **kwargs: Any) -> None:
    from homecloud.cli.output import print_json as real

    real(*args, **kwargs)


def print_table(*args: Any, **kwargs: Any) -> None:
    from homecloud.cli.output import print_table as real

    real(*args, **kwargs)
