"""Steps that hold an instance's creation (or start) until what it runs is usable, and refuse
an image that lacks what its service set runs:

    wait-command   a command run inside the instance (the driver's exec) until it succeeds:
                   ``with: {argv: [pg_isready, -q], timeout: 120}``. Polled inside, so it
                   works with or without a network, and fails at once when the guest stops.
    require-image  files the set needs in the image, checked before anything is made:
                   ``with: {paths: [usr/lib/postgresql/15/bin/postgres], what: PostgreSQL 15,
                   hint: hc image build postgres}``
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from homecloud.errors import Conflict, HomecloudError, UserError
from homecloud.images.catalog import image_dataset
from homecloud.instances.context import StepContext
from homecloud.instances.servicesets import ActionFactory, plain_action
from homecloud.tools import run_tool

if TYPE_CHECKING:
    from homecloud.instances.drivers.base import InstanceDriver

POLL = 0.25  # seconds between tries
TRY_TIMEOUT = 10.0  # one try that hangs is a failed try


def readiness_actions(driver: InstanceDriver) -> Mapping[str, ActionFactory[StepContext]]:
    class WaitCommand:
        def __init__(self, argv: Sequence[str], timeout: float = 120.0) -> None:
            if (isinstance(argv, str) or not argv
                    or not all(isinstance(a, str) and a for a in argv)):
                raise ValueError("argv must be a non-empty list of strings")
            self.argv = list(argv)
            self.timeout = float(timeout)

        def do(self, ctx: StepContext) -> None:
            wait_until_ready(driver, ctx, self.argv, self.timeout)

        def undo(self, ctx: StepContext) -> None:
            """Nothing was made."""

    class RequireImage:
        def __init__(self, paths: Sequence[str], what: str, hint: str = "") -> None:
            if isinstance(paths, str) or not paths:
                raise ValueError("paths must be a non-empty list of paths in the image")
            self.paths = [_relative(p) for p in paths]
            self.what, self.hint = str(what), str(hint)

        def do(self, ctx: StepContext) -> None:
            image = ctx.instance.spec.image
            root = driver.host.pool.path(image_dataset(image))
            for rel in self.paths:
                path = root / rel
                # lexists: the image's links point into the image, not into the host.
                if not (path.is_symlink() or path.exists()):
                    hint = f"; {self.hint}" if self.hint else ""
                    raise UserError(f"image {image!r} has no {self.what} (/{rel} is "
                                    f"missing), which this instance's service set runs{hint}")

        def undo(self, ctx: StepContext) -> None:
            """Nothing was made."""

    factories: dict[str, Any] = {"wait-command": plain_action(WaitCommand),
                                 "require-image": plain_action(RequireImage)}
    return factories


def wait_until_ready(driver: InstanceDriver, ctx: StepContext, argv: list[str],
                     timeout: float) -> None:
    """Run ``argv`` in the instance until it exits 0; a HomecloudError with its last words
    after ``timeout`` seconds, a Conflict as soon as the instance is not running."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            command = driver.exec_argv(ctx.instance, argv)
        except Conflict as exc:
            raise HomecloudError(f"instance {ctx.instance_name} stopped while waiting for "
                                 f"`{' '.join(argv)}` to succeed: {exc}") from None
        result = run_tool(command, timeout=TRY_TIMEOUT)
        if result.returncode == 0:
            return
        said = (result.stderr or result.stdout).strip().splitlines()
        if time.monotonic() > deadline:
            last = said[-1] if said else f"exit status {result.returncode}"
            raise HomecloudError(f"instance {ctx.instance_name} was not ready after "
                                 f"{timeout:g} s: `{' '.join(argv)}` kept failing ({last}); "
                                 f"see `hc logs {ctx.instance_name}`")
        time.sleep(POLL)


def _relative(path: str) -> str:
    rel = PurePosixPath(str(path).lstrip("/"))
    if not rel.parts or ".." in rel.parts:
        raise ValueError(f"path {path!r} must name a file inside the image")
    return str(rel)
