"""homecloud's own kinds of instance and where their drivers live (imported on first use)."""

from __future__ import annotations

from collections.abc import Mapping

BUILTIN_KINDS: Mapping[str, str] = {
    "container": "homecloud.instances.drivers.container:ContainerDriver",
    "vm": "homecloud.instances.drivers.vm:VmDriver",
    "machine": "homecloud.instances.drivers.machine:MachineDriver",
    "lambda": "homecloud.instances.drivers.lambda_:LambdaDriver",
}
