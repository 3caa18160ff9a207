"""Service sets: instance compositions as data (``service-sets/<kind>.yaml``).

A file lists steps, each naming an *action* from a registry the drivers fill::

    description: a container booted with systemd-nspawn
    steps:
      - id: record
        action: record-instance
      - id: dataset
        action: fork-dataset
        after: [record]
      - id: unit
        action: start-unit
        after: [dataset]
        with: {timeout: 90}      # optional parameters, handed to the action's factory
    start:                       # optional: what `hc start` runs for an existing instance
      - id: unit
        action: start-unit

Files in /etc/homecloud/service-sets override and extend the ones shipped with homecloud.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from homecloud.errors import NotFound, UserError
from homecloud.files import read_first_yaml
from homecloud.instances.steps import Step, StepGraph, StepGraphError, check_graph
from homecloud.names import validate_name
from homecloud.resources import shipped_dir

C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)

SHIPPED_DIR = shipped_dir("service-sets")
SEARCH_PATH: tuple[Path, ...] = (Path("/etc/homecloud/service-sets"), SHIPPED_DIR)
_STEP_KEYS = {"id", "action", "after", "with"}


class StepAction(Protocol[C_contra]):
    def do(self, ctx: C_contra) -> Any: ...

    def undo(self, ctx: C_contra) -> Any: ...


ActionFactory = Callable[[Mapping[str, Any]], StepAction[C]]


def plain_action(cls: Callable[..., StepAction[C]]) -> ActionFactory[C]:
    """A factory that hands a step's ``with:`` parameters to ``cls`` as keyword arguments."""
    def factory(params: Mapping[str, Any]) -> StepAction[C]:
        return cls(**params)
    return factory


@dataclass(frozen=True)
class StepDef:
    id: str
    action: str
    after: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceSet:
    kind: str
    steps: tuple[StepDef, ...]
    description: str = ""
    source: str = ""
    start: tuple[StepDef, ...] = ()  # run by `hc start` of an existing instance

    def starting(self) -> ServiceSet:
        """The set's start steps as a service set of their own."""
        return ServiceSet(kind=f"{self.kind} start", steps=self.start,
                          description=self.description, source=f"{self.source} (start)")


class ActionRegistry(Generic[C]):
    """Action names to factories ``params -> StepAction``."""

    def __init__(self) -> None:
        self._factories: dict[str, ActionFactory[C]] = {}

    def register(self, name: str, factory: ActionFactory[C]) -> None:
        if name in self._factories:
            raise ValueError(f"step action {name!r} is registered twice")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def build(self, sset: ServiceSet) -> StepGraph[C]:
        """The runnable graph for ``sset``; UserError naming the file for an unknown action."""
        steps: list[Step[C]] = []
        for sdef in sset.steps:
            factory = self._factories.get(sdef.action)
            if factory is None:
                raise UserError(f"{sset.source}: step {sdef.id!r} uses unknown action "
                                f"{sdef.action!r} (known: {', '.join(self.names())})")
            try:
                action = factory(sdef.params)
            except (TypeError, ValueError) as exc:
                raise UserError(f"{sset.source}: step {sdef.id!r}: bad parameters for "
                                f"{sdef.action}: {exc}") from exc
            steps.append(Step(sdef.id, action.do, action.undo, sdef.after))
        return StepGraph(steps, name=sset.kind)


def parse_service_set(data: Any, kind: str, source: str) -> ServiceSet:
    """Validate the YAML document ``data``; every problem is a UserError naming ``source``."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise UserError(f"{source}: expected a mapping with a 'steps' list")
    unknown = set(data) - {"description", "steps", "start"}
    if unknown:
        raise UserError(f"{source}: unknown keys {', '.join(sorted(unknown))}")
    start = data.get("start", [])
    if not isinstance(start, list):
        raise UserError(f"{source}: 'start' must be a list of steps")
    return ServiceSet(kind=kind, steps=_parse_steps(data["steps"], source),
                      description=str(data.get("description", "")), source=source,
                      start=_parse_steps(start, f"{source}: start") if start else ())


def _parse_steps(raw_steps: list[Any], source: str) -> tuple[StepDef, ...]:
    steps: list[StepDef] = []
    for index, raw in enumerate(raw_steps, 1):
        where = f"{source}: step {index}"
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a mapping with 'id' and 'action'")
        extra = set(raw) - _STEP_KEYS
        if extra:
            raise UserError(f"{where}: unknown keys {', '.join(sorted(extra))} "
                            f"(known: {', '.join(sorted(_STEP_KEYS))})")
        step_id, action = raw.get("id"), raw.get("action")
        if not isinstance(step_id, str) or not step_id:
            raise UserError(f"{where}: 'id' must be a non-empty string")
        if not isinstance(action, str) or not action:
            raise UserError(f"{where} ({step_id}): 'action' must be a non-empty string")
        after = raw.get("after", [])
        if isinstance(after, str):
            after = [after]
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise UserError(f"{where} ({step_id}): 'after' must be a list of step ids")
        params = raw.get("with", {}) or {}
        if not isinstance(params, dict):
            raise UserError(f"{where} ({step_id}): 'with' must be a mapping of parameters")
        steps.append(StepDef(step_id, action, tuple(after), params))
    try:
        check_graph(((s.id, s.after) for s in steps), source)
    except StepGraphError as exc:
        raise UserError(str(exc)) from exc
    return tuple(steps)


class ServiceSetLoader:
    """Service sets from ``search``, each parsed again only when a file of its name on the path
    changes (appears, goes, or holds other text): parsing the YAML is pure-Python work of a few
    milliseconds, paid on every `hc run` otherwise; reading the small files is not."""

    def __init__(self, search: Sequence[Path] = SEARCH_PATH) -> None:
        self.search = tuple(search)
        self._lock = threading.Lock()
        self._parsed: dict[str, tuple[tuple[bytes | None, ...], ServiceSet]] = {}

    def load(self, kind: str) -> ServiceSet:
        validate_name(kind, "service set")
        # The texts, not modification times: a file rewritten within one timestamp tick
        # would keep its time.
        stamp = tuple(_contents(directory / f"{kind}.yaml") for directory in self.search)
        with self._lock:
            cached = self._parsed.get(kind)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        # A file changed between the stamp and the read is parsed again on the next load.
        sset = load_service_set(kind, self.search)
        with self._lock:
            self._parsed[kind] = (stamp, sset)
        return sset


def _contents(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def load_service_set(kind: str, search: Sequence[Path] = SEARCH_PATH) -> ServiceSet:
    """The first ``<kind>.yaml`` on ``search``."""
    validate_name(kind, "service set")
    found = read_first_yaml(directory / f"{kind}.yaml" for directory in search)
    if found is not None:
        return parse_service_set(found[1], kind, str(found[0]))
    raise NotFound(f"no service set {kind!r}: looked for {kind}.yaml in "
                   f"{', '.join(str(d) for d in search)}")
