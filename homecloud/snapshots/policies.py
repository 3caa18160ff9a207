"""Snapshot policies: an instance snapshotted on a systemd timer, thinned by retention counts,
and (with ``replicate_to``) each new snapshot sent to another homecloud host.

A policy names its snapshots ``auto-<UTC time>`` and prunes only those: snapshots a user made
by hand are kept until the user removes them.

Policies come from `hc policy set` or from config.yaml (``snapshots: policies:`` named ones,
``snapshots: instances:`` which instance follows which). Both are rows of the state database,
which also hold their last run; config.yaml's are written there when the agent starts. One set
with `hc policy set` wins over config.yaml's until `hc policy rm`, which brings config.yaml's
back.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from homecloud.config import CONFIG_PATH, SnapshotsConfig
from homecloud.errors import HomecloudError, NotFound, UserError
from homecloud.snapshots.naming import SnapshotRef
from homecloud.snapshots.records import Policy, SnapshotRecords
from homecloud.snapshots.retention import Decision, evaluate, parse_keep
from homecloud.snapshots.schedule import SNAPSHOT_PREFIX, default_every, parse_every
from homecloud.snapshots.service import SnapshotInfo, SnapshotService
from homecloud.snapshots.timers import PolicyTimers
from homecloud.state.store import Store
from homecloud.systemd.transient import Systemd

log = logging.getLogger(__name__)

# Replication: (instance, peer, snapshot) sends that snapshot of the instance to the peer.
Replicate = Callable[[str, str, str], object]


@dataclass(frozen=True)
class RunResult:
    instance: str
    created: str
    pruned: list[str]
    replicated_to: str | None
    error: str | None  # replication's, when the snapshot itself was made


def configured_policies(config: SnapshotsConfig, where: str = str(CONFIG_PATH)
                        ) -> dict[str, Policy]:
    """The policy config.yaml gives each instance, its counts and interval checked as
    `hc policy set` checks them; a one-line UserError naming the policy otherwise."""
    out: dict[str, Policy] = {}
    checked: dict[str, Policy] = {}
    for named in config.policies:
        try:
            counts = parse_keep(named.keep)
            seconds = parse_every(named.every) if named.every else default_every(counts)
        except UserError as exc:
            # The same checks as `hc policy set`'s, named as config.yaml spells them.
            said = exc.message.replace("--keep: ", "keep: ").replace("--every ", "every ")
            raise UserError(f"{where}: snapshots: policies: {named.name}: {said}") from None
        checked[named.name] = Policy(instance="", keep=str(counts), every=seconds,
                                     replicate_to=named.replicate_to,
                                     config_policy=named.name, source="config")
    for instance, name in config.instances:
        out[instance] = replace(checked[name], instance=instance)
    return out


class PolicyService:
    def __init__(self, snapshots: SnapshotService, records: SnapshotRecords,
                 timers: PolicyTimers, replicate: Replicate | None = None,
                 configured: Mapping[str, Policy] | None = None) -> None:
        self.snapshots = snapshots
        self.records = records
        self.timers = timers
        self.replicate = replicate
        self.configured = dict(configured or {})  # config.yaml's, by instance
        self._running: dict[str, threading.Lock] = {}
        self._running_guard = threading.Lock()

    def set(self, instance: str, keep: str, every: str | None = None,
            replicate_to: str | None = None) -> Policy:
        """Create or change ``instance``'s policy; every value is checked before any change."""
        self.snapshots.instances.instance(instance)  # NotFound for an unknown instance
        counts = parse_keep(keep)
        seconds = parse_every(every) if every else default_every(counts)
        if replicate_to is not None and self.records.peer(replicate_to) is None:
            raise NotFound(f"no peer named {replicate_to!r} to replicate to; add it with "
                           f"`hc peer add {replicate_to} --url https://HOST --token T`")
        policy = Policy(instance=instance, keep=str(counts), every=seconds,
                        replicate_to=replicate_to)
        self._put(policy)
        return self._shown(self.records.policy(instance) or policy)

    def _put(self, policy: Policy) -> None:
        """Record ``policy`` and write its timer; on failure the previous one is restored."""
        previous = self.records.policy(policy.instance)
        self.records.put_policy(policy)
        try:
            self.timers.install(policy.instance, policy.every)
        except BaseException:
            if previous is None:
                self.records.delete_policy(policy.instance)
            else:
                self.records.put_policy(previous)
            raise

    def _shown(self, policy: Policy) -> Policy:
        """``policy`` with the config.yaml policy it overrides, if any."""
        configured = self.configured.get(policy.instance)
        if policy.config_policy is None and configured is not None:
            return replace(policy, overrides=configured.config_policy)
        return policy

    def require(self, instance: str) -> Policy:
        policy = self.records.policy(instance)
        if policy is None:
            raise NotFound(f"instance {instance} has no snapshot policy; see `hc policy ls`, "
                           f"or set one with `hc policy set {instance} --keep ...`")
        return policy

    def list(self) -> builtins.list[Policy]:
        return [self._shown(p) for p in self.records.policies()]

    def remove(self, instance: str) -> Policy | None:
        """Remove the policy set with `hc policy set`; return config.yaml's, which applies
        again, if it gives one. config.yaml's own cannot be removed here."""
        policy = self.require(instance)
        if policy.config_policy is not None:
            raise UserError(f"the policy of {instance} is {policy.config_policy!r} from "
                            f"config.yaml (snapshots: instances: {instance}): remove it "
                            "there and restart hcd (`systemctl restart hcd`)")
        self._drop(instance)
        configured = self.configured.get(instance)
        if configured is not None:
            self._put(configured)
        return configured

    def _drop(self, instance: str) -> None:
        self.timers.remove(instance)
        self.records.delete_policy(instance)

    def decision(self, instance: str) -> Decision | None:
        """What the policy of ``instance`` keeps and prunes among its own snapshots now."""
        policy = self.records.policy(instance)
        if policy is None:
            return None
        own = [(s.name, s.created) for s in self.snapshots.pool.snapshots(
            self.snapshots.instances.instance(instance).dataset)
            if s.name.startswith(SNAPSHOT_PREFIX)]
        return evaluate(own, parse_keep(policy.keep), self.replication_bases(instance))

    def replication_bases(self, instance: str) -> builtins.set[str]:
        """Per peer, the last made of the snapshots it holds that are still here: the base of
        its next incremental stream, never pruned. Made last, not stamped latest: a clock set
        back gives a newer snapshot an earlier time."""
        made = {s.name: at for at, s in enumerate(self.snapshots.pool.snapshots(
            self.snapshots.instances.instance(instance).dataset))}
        newest: dict[str, tuple[int, str]] = {}
        for snapshot, peers in self.records.replicas(instance).items():
            if snapshot not in made:
                continue
            for peer in peers:
                newest[peer] = max(newest.get(peer, (-1, "")), (made[snapshot], snapshot))
        return {snapshot for _, snapshot in newest.values()}

    def run(self, instance: str) -> RunResult:
        """Snapshot now, replicate if asked, then prune what the counts no longer keep. A
        failed replication leaves every snapshot its peer may need, and is shown in
        `hc policy ls`. Runs of one policy take turns (its timer and `hc policy run` may
        meet): each prunes from what the one before it sent."""
        with self._running_guard:
            lock = self._running.setdefault(instance, threading.Lock())
        with lock:
            return self._run(instance)

    def _run(self, instance: str) -> RunResult:
        policy = self.require(instance)
        try:
            self.snapshots.instances.instance(instance)
        except NotFound as exc:
            if policy.config_policy is not None:  # config.yaml's waits for its instance
                self.records.ran(instance, time.time(), None, exc.message)
            else:  # the instance was removed: its policy goes with it
                self._drop(instance)
            raise
        try:
            made = self.snapshots.create(instance, prefix=SNAPSHOT_PREFIX)
        except HomecloudError as exc:
            self.records.ran(instance, time.time(), None, exc.message)
            raise
        error = None
        if policy.replicate_to and self.replicate is not None:
            try:
                self.replicate(instance, policy.replicate_to, made.name)
            except HomecloudError as exc:
                error = f"replication to {policy.replicate_to} failed: {exc.message}"
                log.warning("policy of %s: %s", instance, error)
        decision = self.decision(instance)
        pruned = decision.prune if decision is not None else []
        for name in pruned:
            self.snapshots.remove(SnapshotRef(instance, name))
            self.records.forget_replicas(instance, name)
        self.records.ran(instance, time.time(), made.name, error)
        return RunResult(instance=instance, created=made.name, pruned=pruned,
                         replicated_to=policy.replicate_to if error is None else None,
                         error=error)

    def annotate(self, infos: builtins.list[SnapshotInfo]) -> builtins.list[SnapshotInfo]:
        """Fill in which rule keeps each snapshot and where it was replicated."""
        out = []
        decisions: dict[str, Decision | None] = {}
        replicas: dict[str, dict[str, set[str]]] = {}
        for info in infos:
            if info.instance not in decisions:
                decisions[info.instance] = self.decision(info.instance)
                replicas[info.instance] = self.records.replicas(info.instance)
            decision = decisions[info.instance]
            if not info.name.startswith(SNAPSHOT_PREFIX):
                kept_by = "manual"
            elif decision is None:
                kept_by = "no policy"
            else:
                kept_by = ", ".join(decision.keep.get(info.name, ["pruned at the next run"]))
            out.append(replace(info, kept_by=kept_by,
                               replicated_to=sorted(replicas[info.instance].get(info.name, ()))))
        return out

    def _apply_config(self) -> builtins.list[str]:
        """Write config.yaml's policies (but not over one set with `hc policy set`), and
        remove those config.yaml no longer gives. Their timers are written even before their
        instance exists: a run then says the instance is missing, in `hc policy ls`."""
        changed = []
        for instance, configured in self.configured.items():
            current = self.records.policy(instance)
            if current is not None and current.config_policy is None:
                continue  # `hc policy set` wins
            if current is None or (current.keep, current.every, current.replicate_to,
                                   current.config_policy) != (
                    configured.keep, configured.every, configured.replicate_to,
                    configured.config_policy):
                self._put(configured)
                changed.append(f"applied config.yaml's policy {configured.config_policy} to "
                               f"{instance}")
        for policy in self.records.policies():
            if policy.config_policy is not None and policy.instance not in self.configured:
                self._drop(policy.instance)
                changed.append(f"removed config.yaml's former policy of {policy.instance}")
        return changed

    def reconcile(self) -> builtins.list[str]:
        """Make the timers on disk match the policies: a policy of a removed instance goes,
        a missing timer is written, a timer without a policy is removed."""
        known = {i.name for i in self.snapshots.instances.records.all()}
        changed = self._apply_config()
        for policy in self.records.policies():
            if policy.instance not in known and policy.config_policy is None:
                self._drop(policy.instance)
                self.records.forget_replicas(policy.instance)
                changed.append(f"removed the policy of {policy.instance}")
            elif policy.instance not in self.timers.installed():
                self.timers.install(policy.instance, policy.every)
                changed.append(f"wrote the timer of {policy.instance}")
        for orphan in self.timers.installed() - {p.instance for p in self.records.policies()}:
            self.timers.remove(orphan)
            changed.append(f"removed the timer of {orphan}")
        if changed:
            log.info("reconcile: %s", "; ".join(changed))
        return changed


def policy_service(snapshots: SnapshotService, store: Store, systemd: Systemd,
                   replicate: Replicate | None = None,
                   config: SnapshotsConfig | None = None) -> PolicyService:
    """The policy service of an agent, over its store and systemd, with config.yaml's
    policies (``config``: its snapshots section; checked here)."""
    return PolicyService(snapshots, SnapshotRecords(store), PolicyTimers(systemd), replicate,
                         configured_policies(config or SnapshotsConfig()))
