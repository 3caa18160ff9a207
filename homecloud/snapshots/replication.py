"""Sending an instance's snapshots to another homecloud host, and receiving them there.

The sender asks the receiver which snapshots of each dataset it holds, and sends the newest
snapshot as the difference from the newest one both have (the whole snapshot when they share
none), its volumes first and its own dataset last, as for creation. Each stream carries its
length and CRC-32C (framing.py); the receiver reads it into ``replicas/<sender>/<dataset>`` and
keeps it only if they match and ``btrfs receive`` succeeded. A receive that fails part-way
leaves nothing (the driver receives into a work directory that is removed on failure).

The receive route is part of the agent's API, so only an authenticated caller reaches it: root
or the homecloud group on the socket, an admin's token through the front door. A crafted
stream can reflink any file of the receiving file system, so nothing else may send one.
"""

from __future__ import annotations

import builtins
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

from homecloud.client.tls import normal_fingerprint
from homecloud.errors import Conflict, NotFound, UserError
from homecloud.images.progress import ProgressCallback, ignore_progress
from homecloud.names import dns_label
from homecloud.snapshots.framing import CheckedReader, ChecksumWriter
from homecloud.snapshots.naming import validate_snapshot_name
from homecloud.snapshots.records import PeerRecord, SnapshotRecords
from homecloud.snapshots.sendprogress import ProgressWriter
from homecloud.snapshots.service import SnapshotService
from homecloud.snapshots.transport import PeerClient, PeerUnreachable, check_url, quoted
from homecloud.storage.base import check_dataset_name

log = logging.getLogger(__name__)

REPLICAS = "replicas"
RETRY_PAUSES = (1.0, 2.0, 4.0)  # seconds between attempts when the peer does not answer
_DATASET_RE = re.compile(r"instances/[^/]+|volumes/[^/]+/[^/]+")


@dataclass(frozen=True)
class SendResult:
    instance: str
    snapshot: str
    peer: str
    streams: list[str]  # "dataset@snapshot (full)" or "(from PARENT)"; empty: already there
    bytes: int


def replica_dataset(source: str, dataset: str) -> str:
    """Where a dataset of host ``source`` lands here; checked, since both come off the wire."""
    dns_label(source, "the sending host's name")
    if not _DATASET_RE.fullmatch(dataset):
        raise UserError(f"invalid dataset {dataset!r} to receive: only instances/NAME and "
                        "volumes/NAME/VOLUME are replicated")
    check_dataset_name(dataset)
    return f"{REPLICAS}/{source}/{dataset}"


class Replicator:
    def __init__(self, snapshots: SnapshotService, records: SnapshotRecords, source: str,
                 retry_pauses: tuple[float, ...] = RETRY_PAUSES) -> None:
        self.snapshots = snapshots
        self.records = records
        self.source = source  # this host's name, as peers file what it sends
        self.retry_pauses = retry_pauses
        # One receive at a time into each replica dataset: a second one waits, then sees
        # what the first left (an incremental's parent, or the snapshot already there).
        self._receiving: dict[str, threading.Lock] = {}
        self._receiving_guard = threading.Lock()

    # -- peers ----------------------------------------------------------------------------------
    def add_peer(self, name: str, url: str, token: str | None, ca: str | None,
                 fingerprint: str | None = None) -> PeerRecord:
        name = dns_label(name, "peer name")
        check_url(url)
        if url.startswith("https:") and not token:
            raise UserError(f"peer {name}: a front door needs an admin's token: --token T "
                            "(`hc user token NAME` on that host prints one)")
        pinned = normal_fingerprint(fingerprint) if fingerprint else None
        if fingerprint and pinned is None:
            raise UserError(f"peer {name}: --fingerprint {fingerprint!r} is not a SHA-256 "
                            "fingerprint (64 hex digits, colons allowed)")
        peer = PeerRecord(name, url, token, ca, pinned)
        self.records.put_peer(peer)
        return peer

    def peer(self, name: str) -> PeerRecord:
        peer = self.records.peer(name)
        if peer is None:
            raise NotFound(f"no peer named {name!r}; add it with `hc peer add {name} --url "
                           "https://HOST --token T` (see `hc peer ls`)")
        return peer

    def remove_peer(self, name: str) -> None:
        self.peer(name)
        self.records.delete_peer(name)

    # -- sending --------------------------------------------------------------------------------
    def to_send(self, instance: str, peer_name: str,
                snapshot: str | None = None) -> tuple[PeerRecord, str]:
        """The peer and the snapshot a send would send; refuses an unknown peer, instance or
        snapshot, and an instance without one, before any work."""
        peer = self.peer(peer_name)
        record = self.snapshots.instances.instance(instance)
        own = [s.name for s in self.snapshots.pool.snapshots(record.dataset)]
        if not own:
            raise UserError(f"instance {instance} has no snapshot to send; make one with "
                            f"`hc snapshot create {instance}`")
        if snapshot is not None and snapshot not in own:
            raise NotFound(f"snapshot {instance}@{snapshot} does not exist")
        return peer, snapshot or own[-1]

    def send(self, instance: str, peer_name: str, snapshot: str | None = None,
             progress: ProgressCallback = ignore_progress) -> SendResult:
        """Send ``snapshot`` of ``instance`` (by default the last one made) to the peer,
        retrying with back-off while it does not answer; ``progress`` hears of each stream
        and of its bytes as they go."""
        peer, newest = self.to_send(instance, peer_name, snapshot)
        client = PeerClient(peer)
        for pause in (*self.retry_pauses, None):
            try:
                result = self._send(client, instance, newest, progress)
                break
            except PeerUnreachable as exc:
                if pause is None:
                    raise
                log.warning("%s; trying again in %g s", exc.message, pause)
                time.sleep(pause)
        self.records.sent(instance, newest, peer.name, time.time())
        return result

    def _send(self, client: PeerClient, instance: str, snapshot: str,
              progress: ProgressCallback) -> SendResult:
        pool = self.snapshots.pool
        streams: list[str] = []
        total = 0
        for dataset in self.snapshots.datasets(instance):
            local = [s.name for s in pool.snapshots(dataset)]
            if snapshot not in local:
                continue
            there = set(client.call("GET", f"/v1/replicas/{quoted(self.source)}/snapshots",
                                    {"dataset": dataset}))
            if snapshot in there:
                continue
            older = local[:local.index(snapshot)]
            parent = next((name for name in reversed(older) if name in there), None)
            query = {"dataset": dataset, "snapshot": snapshot}
            if parent is not None:
                query["parent"] = parent
            stream = f"{dataset}@{snapshot} " + (f"(from {parent})" if parent else "(full)")
            sent = 0

            def write(out: BinaryIO, dataset: str = dataset, parent: str | None = parent,
                      stream: str = stream) -> None:
                nonlocal sent
                framed = ChecksumWriter(out)
                counted = ProgressWriter(framed, stream, progress)
                pool.send(dataset, snapshot, counted,  # type: ignore[arg-type]
                          parent=parent)
                counted.report()
                framed.finish()
                sent = framed.size

            client.post_stream(f"/v1/replicas/{quoted(self.source)}/receive", query, write)
            total += sent
            streams.append(stream)
        return SendResult(instance=instance, snapshot=snapshot, peer=client.peer.name,
                          streams=streams, bytes=total)

    # -- receiving ------------------------------------------------------------------------------
    def _receive_lock(self, target: str) -> threading.Lock:
        with self._receiving_guard:
            return self._receiving.setdefault(target, threading.Lock())

    def held(self, source: str, dataset: str) -> builtins.list[str]:
        target = replica_dataset(source, dataset)
        pool = self.snapshots.pool
        return [s.name for s in pool.snapshots(target)] if pool.exists(target) else []

    def receive(self, source: str, dataset: str, snapshot: str, parent: str | None,
                stream: BinaryIO) -> dict[str, object]:
        target = replica_dataset(source, dataset)
        validate_snapshot_name(snapshot)
        with self._receive_lock(target):
            held = self.held(source, dataset)
            if snapshot in held:
                raise Conflict(f"{target}@{snapshot} is already here")
            if parent is not None and parent not in held:
                raise Conflict(f"cannot apply a stream based on {parent}: {target} does not "
                               "hold it (send the whole snapshot)")
            checked = CheckedReader(stream)
            self.snapshots.pool.receive(target, snapshot, checked)  # type: ignore[arg-type]
        log.info("received %s@%s from %s (%d bytes)", target, snapshot, source, checked.size)
        return {"dataset": target, "snapshot": snapshot, "bytes": checked.size}
