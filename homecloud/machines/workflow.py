"""Machine workflows as data: the ordered actions the installer runs on a machine.

A workflow is a YAML file::

    description: install the image on the machine's disk
    actions:
      - {id: wipe, action: wipe-disk, timeout: 60}
      - {id: partition, action: partition, timeout: 60, with: {esp: 256M}}
      - {id: image, action: stream-image, timeout: 1800}
      - {id: extra, action: write-file, with: {path: /etc/motd, content: "hi\\n"}}
      - {id: cmd, action: run-in-target, with: {argv: [systemctl, enable, ssh]}}

homecloud ships ``machine-install.yaml`` and ``machine-diskless.yaml`` beside the service sets
(workflow names ``install`` and ``diskless``); a user's own ``/etc/homecloud/workflows/NAME.yaml``
is picked by ``hc machine add --workflow NAME`` and wins over a shipped one of the same name.
Everything here is pure: parsing and validation, no I/O except reading the file in
``load_workflow``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homecloud.errors import NotFound, UserError
from homecloud.files import read_first_yaml
from homecloud.names import validate_name
from homecloud.resources import shipped_dir
from homecloud.sizes import parse_size

USER_DIR = Path("/etc/homecloud/workflows")
SHIPPED_PREFIX = "machine-"  # shipped workflows sit beside the service sets as machine-NAME.yaml
DEFAULT_TIMEOUT = 600  # seconds, for an action that names none
MAX_TIMEOUT = 24 * 3600
INSTALL = "install"
DISKLESS = "diskless"

_ACTION_KEYS = {"id", "action", "timeout", "with"}
_ID_RE = re.compile(r"[a-z0-9]([a-z0-9_-]{0,62})")


# Each parameter check returns an error text, or "" when the value is fine.
ParamCheck = Callable[[Any], str]


def _string(value: Any) -> str:
    return "" if isinstance(value, str) else "must be a string"


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        return "must be an absolute path"
    if ".." in value.split("/"):
        return "must not contain '..'"
    return ""


def _size(value: Any) -> str:
    try:
        parse_size(value if isinstance(value, (int, str)) else repr(value))
    except UserError as exc:
        return f"is not a size ({exc.message})"
    return ""


def _argv(value: Any) -> str:
    if (not isinstance(value, list) or not value
            or not all(isinstance(a, str) and "\0" not in a for a in value)):
        return "must be a non-empty list of strings"
    return ""


def _file_mode(value: Any) -> str:
    if isinstance(value, int) and 0 <= value <= 0o7777:
        return ""
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value):
        return ""
    return "must be a file mode like '0644'"


@dataclass(frozen=True)
class ActionKind:
    """What an action accepts under ``with:``: every parameter's check, and which are required."""

    params: Mapping[str, ParamCheck] = field(default_factory=dict)
    required: frozenset[str] = frozenset()


# The actions homecloud's installer knows. A new action is an entry here and its script in the
# installer.
ACTIONS: Mapping[str, ActionKind] = {
    "wipe-disk": ActionKind(),
    "partition": ActionKind({"esp": _size}),
    "stream-image": ActionKind(),
    "bootloader": ActionKind(),
    "identity": ActionKind(),
    "fetch-rootfs": ActionKind(),
    "write-file": ActionKind({"path": _absolute_path, "content": _string, "mode": _file_mode},
                             frozenset({"path", "content"})),
    "run-in-target": ActionKind({"argv": _argv}, frozenset({"argv"})),
}


@dataclass(frozen=True)
class Action:
    id: str
    action: str
    timeout: int = DEFAULT_TIMEOUT
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "timeout": self.timeout,
                "with": dict(self.params)}


@dataclass(frozen=True)
class Workflow:
    name: str
    actions: tuple[Action, ...]
    description: str = ""
    source: str = ""

    def ids(self) -> list[str]:
        return [a.id for a in self.actions]

    def has_step(self, step: str) -> bool:
        return step in self.ids()

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.actions]


def parse_workflow(data: Any, name: str, source: str,
                   actions: Mapping[str, ActionKind] = ACTIONS) -> Workflow:
    """Validate the YAML document ``data``; every problem is a UserError naming ``source``."""
    if not isinstance(data, dict) or not isinstance(data.get("actions"), list):
        raise UserError(f"{source}: expected a mapping with an 'actions' list")
    unknown = set(data) - {"description", "actions"}
    if unknown:
        raise UserError(f"{source}: unknown keys {', '.join(sorted(map(str, unknown)))} "
                        "(known: actions, description)")
    if not data["actions"]:
        raise UserError(f"{source}: 'actions' is empty: a workflow needs at least one action")
    parsed = tuple(_parse_action(raw, index, source, actions)
                   for index, raw in enumerate(data["actions"], 1))
    seen: set[str] = set()
    for action in parsed:
        if action.id in seen:
            raise UserError(f"{source}: action id {action.id!r} is used twice")
        seen.add(action.id)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{source}: 'description' must be a string")
    return Workflow(name=name, actions=parsed, description=description, source=source)


def _parse_action(raw: Any, index: int, source: str,
                  actions: Mapping[str, ActionKind]) -> Action:
    where = f"{source}: action {index}"
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping with 'id' and 'action'")
    extra = set(raw) - _ACTION_KEYS
    if extra:
        raise UserError(f"{where}: unknown keys {', '.join(sorted(map(str, extra)))} "
                        f"(known: {', '.join(sorted(_ACTION_KEYS))})")
    action_id, name = raw.get("id"), raw.get("action")
    if not isinstance(action_id, str) or not _ID_RE.fullmatch(action_id):
        raise UserError(f"{where}: 'id' must be lower-case letters, digits, '-' and '_' "
                        "(at most 63), starting with a letter or digit")
    where = f"{where} ({action_id})"
    if not isinstance(name, str) or name not in actions:
        raise UserError(f"{where}: unknown action {name!r} "
                        f"(known: {', '.join(sorted(actions))})")
    timeout = raw.get("timeout", DEFAULT_TIMEOUT)
    if (not isinstance(timeout, int) or isinstance(timeout, bool)
            or not 0 < timeout <= MAX_TIMEOUT):
        raise UserError(f"{where}: 'timeout' must be a whole number of seconds between 1 and "
                        f"{MAX_TIMEOUT}")
    params = raw.get("with", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise UserError(f"{where}: 'with' must be a mapping of parameters")
    _check_params(params, actions[name], f"{where}: {name}")
    return Action(id=action_id, action=name, timeout=timeout, params=dict(params))


def _check_params(params: Mapping[Any, Any], kind: ActionKind, where: str) -> None:
    unknown = set(params) - set(kind.params)
    if unknown:
        known = ", ".join(sorted(kind.params)) or "none"
        raise UserError(f"{where}: unknown parameters {', '.join(sorted(map(str, unknown)))} "
                        f"(known: {known})")
    missing = kind.required - set(params)
    if missing:
        raise UserError(f"{where}: missing parameters {', '.join(sorted(missing))}")
    for key, value in params.items():
        problem = kind.params[key](value)
        if problem:
            raise UserError(f"{where}: {key!r} {problem}")


def workflow_paths(name: str, user_dir: Path | None = None,
                   shipped: Path | None = None) -> list[Path]:
    """Where the workflow ``name`` may be, first match wins: the user's, then homecloud's."""
    validate_name(name, "workflow name")
    return [(user_dir or USER_DIR) / f"{name}.yaml",
            (shipped or shipped_dir("service-sets")) / f"{SHIPPED_PREFIX}{name}.yaml"]


def load_workflow(name: str, search: Sequence[Path] | None = None) -> Workflow:
    """The workflow ``name``, parsed and validated; NotFound naming where it looked."""
    paths = list(search) if search is not None else workflow_paths(name)
    found = read_first_yaml(paths)
    if found is not None:
        return parse_workflow(found[1], name, str(found[0]))
    raise NotFound(f"no workflow {name!r}: looked for {', '.join(str(p) for p in paths)}")


def default_workflow(diskless: bool) -> str:
    return DISKLESS if diskless else INSTALL
