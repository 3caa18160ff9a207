"""The start-up pass that makes the record and the system agree again.

Principle: the pool, systemd and the kernel say what is; the database says what was asked for.
Work a crash left half-made is removed; finished work the record missed is adopted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from homecloud.agent.app import Agent
from homecloud.images.catalog import IMAGE_PREFIX
from homecloud.images.publish import PARTIAL_PREFIX

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    removed_partial: list[str] = field(default_factory=list)
    forgotten_images: list[str] = field(default_factory=list)
    adopted_images: list[str] = field(default_factory=list)


def reconcile(agent: Agent) -> ReconcileReport:
    report = ReconcileReport()
    datasets = {d.name for d in agent.pool.list(IMAGE_PREFIX) if d.name != IMAGE_PREFIX}
    for name in sorted(datasets):
        leaf = name.rsplit("/", 1)[-1]
        if leaf.startswith(PARTIAL_PREFIX):
            agent.pool.destroy(name)
            report.removed_partial.append(name)
    recorded = {image.name: image for image in agent.images.list()}
    for image in recorded.values():
        if image.dataset not in datasets:
            users = agent.images.users(image.name)
            if users:
                log.warning("image %s lost its dataset but is used by %s; keeping its record",
                            image.name, ", ".join(users))
                continue
            agent.store.execute("DELETE FROM images WHERE name = ?", (image.name,))
            report.forgotten_images.append(image.name)
    for name in sorted(datasets):
        leaf = name.rsplit("/", 1)[-1]
        if leaf.startswith(PARTIAL_PREFIX) or name.count("/") != 1 or leaf in recorded:
            continue
        agent.images.record(leaf, "adopted", created=agent.pool.get(name).created)
        report.adopted_images.append(leaf)
    for what, items in vars(report).items():
        if items:
            log.info("reconcile: %s: %s", what.replace("_", " "), ", ".join(items))
    agent.instances.reconcile()
    agent.frontdoor.reconcile()  # after the instances: routes lead to their addresses
    agent.snapshots.reconcile()
    agent.machines.start()
    agent.policies.reconcile()
    return report
