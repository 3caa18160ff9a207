"""Errors that reach the user as one line and an exit code.

The CLI contract: 1 user error, 2 usage, 3 the host lacks something. The agent maps each error to
an HTTP status so the CLI can turn it back into the same message and exit code.
"""

from __future__ import annotations

import sys

# `hc` imports this module at start-up; collections.abc would be one more module for it to load,
# and only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_USER = 1
EXIT_USAGE = 2
EXIT_HOST = 3


class HomecloudError(Exception):
    """Base for errors with a message meant for the user."""

    exit_code = EXIT_USER
    http_status = 400
    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, object]:
        return {"error": self.message, "kind": self.kind, "exit_code": self.exit_code}


class UserError(HomecloudError):
    """The request itself is wrong: a bad name, a bad path, a bad value."""

    kind = "invalid"


class NotFound(UserError):
    http_status = 404
    kind = "not-found"


class Conflict(UserError):
    """The request clashes with what exists: a duplicate name, an image in use."""

    http_status = 409
    kind = "conflict"


class PoolFull(UserError):
    http_status = 507
    kind = "pool-full"


class PermissionDenied(UserError):
    http_status = 403
    kind = "forbidden"


class HostError(HomecloudError):
    """The host lacks something homecloud needs (a tool, a kernel feature, systemd)."""

    exit_code = EXIT_HOST
    http_status = 503
    kind = "host"


ERROR_KINDS: dict[str, type[HomecloudError]] = {
    cls.kind: cls
    for cls in (HomecloudError, UserError, NotFound, Conflict, PoolFull, PermissionDenied,
                HostError)
}


def error_from_json(data: dict[str, object]) -> HomecloudError:
    """Rebuild an error the agent sent, keeping its class so exit codes survive the trip."""
    cls = ERROR_KINDS.get(str(data.get("kind", "error")), HomecloudError)
    return cls(str(data.get("error", "unknown error")))


def exit_status(prog: str, work: Callable[[], int | None]) -> int:
    """Run a command's ``work`` and return its exit status. A HomecloudError becomes its one
    line on stderr ("PROG: message") and its exit code; Ctrl-C, "PROG: interrupted" and 130."""
    try:
        return int(work() or 0)
    except HomecloudError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
