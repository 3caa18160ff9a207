"""API routes for snapshots: create, list, roll back, clone and remove an instance's
snapshots."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from homecloud.agent.app import Agent
from homecloud.agent.fields import body_field
from homecloud.agent.operations import ProgressReport, stream_operation
from homecloud.agent.routes import Request, Response, Route, StreamResponse
from homecloud.agent.schemas import INSTANCE_NAME, array_of, dataclass_schema, object_schema


def snapshot_routes(agent: Agent) -> list[Route]:
    from homecloud.instances.info import InstanceInfo
    from homecloud.snapshots.naming import SnapshotRef, parse_ref
    from homecloud.snapshots.policies import RunResult
    from homecloud.snapshots.records import PeerRecord, Policy
    from homecloud.snapshots.replication import SendResult
    from homecloud.snapshots.service import SnapshotInfo

    def ref_of(request: Request) -> SnapshotRef:
        return parse_ref(f"{request.params['name']}@{request.params['snapshot']}")

    def list_snapshots(request: Request) -> Response:
        name = request.params.get("name") or None
        return Response([asdict(s) for s in agent.policies.annotate(agent.snapshots.list(name))])

    def create_snapshot(request: Request) -> Response:
        name = request.params["name"]
        snapshot = body_field(request, "name", str, required=False)
        with agent.busy_instances.hold(name, "a snapshot"):
            return Response(asdict(agent.snapshots.create(name, snapshot)), status=201)

    def rollback(request: Request) -> Response:
        ref = ref_of(request)
        with agent.busy_instances.hold(ref.instance, "a rollback"):
            return Response(asdict(agent.snapshots.rollback(ref)))

    def remove_snapshot(request: Request) -> Response:
        ref = ref_of(request)
        with agent.busy_instances.hold(ref.instance, "a snapshot removal"):
            agent.snapshots.remove(ref)
        return Response({"removed": str(ref)})

    def clone(request: Request) -> StreamResponse:
        ref = ref_of(request)
        new_name = body_field(request, "name", str)
        agent.snapshots.clone_spec(ref, new_name)  # a bad name or snapshot: refused before work

        def work(progress: ProgressReport) -> dict[str, Any]:
            with agent.busy_instances.hold(new_name, "a creation"), \
                    agent.busy_instances.hold(ref.instance, "a clone"):
                return asdict(agent.snapshots.clone(ref, new_name, progress))

        return StreamResponse(stream_operation(work, f"clone {ref}"))

    def clone_replica(request: Request) -> StreamResponse:
        sender, ref = request.params["source"], ref_of(request)
        new_name = body_field(request, "name", str)
        image = body_field(request, "image", str)
        agent.snapshots.replica_clone_spec(sender, ref, new_name, image)  # checked before any work

        def work(progress: ProgressReport) -> dict[str, Any]:
            with agent.busy_instances.hold(new_name, "a creation"):
                return asdict(agent.snapshots.clone_replica(sender, ref, new_name, image, progress))

        return StreamResponse(stream_operation(work, f"clone {sender}/{ref}"))

    def list_replicas(request: Request) -> Response:
        return Response(agent.snapshots.replicas())

    def set_policy(request: Request) -> Response:
        name = request.params["name"]
        keep = body_field(request, "keep", str)
        every = body_field(request, "every", str, required=False)
        target = body_field(request, "replicate_to", str, required=False)
        with agent.busy_instances.hold(name, "a policy change"):
            return Response(asdict(agent.policies.set(name, keep, every, target)))

    def list_policies(request: Request) -> Response:
        return Response([asdict(p) for p in agent.policies.list()])

    def remove_policy(request: Request) -> Response:
        name = request.params["name"]
        with agent.busy_instances.hold(name, "a policy change"):
            configured = agent.policies.remove(name)
        return Response({"removed": name,
                         "applies": configured.config_policy if configured else None})

    def run_policy(request: Request) -> Response:
        name = request.params["name"]
        with agent.busy_instances.hold(name, "a policy run"):
            return Response(asdict(agent.policies.run(name)))

    def add_peer(request: Request) -> Response:
        peer = agent.replicator.add_peer(body_field(request, "name", str),
                                   body_field(request, "url", str),
                                   body_field(request, "token", str, required=False),
                                   body_field(request, "ca", str, required=False),
                                   body_field(request, "fingerprint", str, required=False))
        return Response(shown(peer), status=201)

    def shown(peer: PeerRecord) -> dict[str, Any]:
        # A token is a credential: said to be set, never shown.
        return asdict(replace(peer, token="(set)" if peer.token else None))

    def list_peers(request: Request) -> Response:
        return Response([shown(p) for p in agent.snapshot_records.peers()])

    def remove_peer(request: Request) -> Response:
        agent.replicator.remove_peer(request.params["peer"])
        return Response({"removed": request.params["peer"]})

    def send(request: Request) -> StreamResponse:
        name = request.params["name"]
        to = body_field(request, "to", str)
        agent.replicator.to_send(name, to)  # an unknown peer or instance: refused before work

        def work(progress: ProgressReport) -> dict[str, Any]:
            with agent.busy_instances.hold(name, "a send"):
                return asdict(agent.replicator.send(name, to, progress=progress))

        return StreamResponse(stream_operation(work, f"send {name} to {to}"))

    def held(request: Request) -> Response:
        return Response(agent.replicator.held(request.params["source"],
                                        request.query.get("dataset", "")))

    def receive(request: Request) -> Response:
        query = request.query
        assert request.stream is not None
        return Response(agent.replicator.receive(request.params["source"], query.get("dataset", ""),
                                           query.get("snapshot", ""), query.get("parent"),
                                           request.stream), status=201)

    snapshot, instance = dataclass_schema(SnapshotInfo), dataclass_schema(InstanceInfo)
    policy = dataclass_schema(Policy)
    name = {"name": INSTANCE_NAME}
    base = "/v1/instances/{name}/snapshots"
    return [
        Route("GET", "/v1/snapshots", list_snapshots,
              "List the snapshots of every instance", response=array_of(snapshot)),
        Route("GET", base, list_snapshots, "List an instance's snapshots",
              response=array_of(snapshot), params=name),
        Route("POST", base, create_snapshot,
              "Snapshot all of an instance's datasets at one instant (a running instance is "
              "paused for it); the name defaults to the time in UTC",
              body={"name": "string?"}, response=snapshot, params=name),
        Route("POST", base + "/{snapshot}/rollback", rollback,
              "Stop the instance, roll each of its datasets back to the snapshot, start it "
              "again if it ran; newer snapshots are kept", response=instance, params=name),
        Route("POST", base + "/{snapshot}/clone", clone,
              "Create and start a new instance from the snapshot (streams step progress)",
              body={"name": "string"}, streams=True, response=instance, params=name),
        Route("GET", "/v1/replicas", list_replicas,
              "List the snapshots received from other hosts",
              response=array_of(object_schema({"sender": "string", "instance": "string",
                                               "snapshot": "string",
                                               "created_utc": "string"}))),
        Route("POST", "/v1/replicas/{source}/instances/{name}/snapshots/{snapshot}/clone",
              clone_replica, "Create and start a new instance from a snapshot received from "
              "host SOURCE; IMAGE (here) says which service set makes it (streams step "
              "progress)", body={"name": "string", "image": "string"}, streams=True,
              response=instance, params=name),
        Route("DELETE", base + "/{snapshot}", remove_snapshot, "Remove a snapshot",
              response=object_schema({"removed": "string"}), params=name),
        Route("GET", "/v1/policies", list_policies, "List snapshot policies",
              response=array_of(policy)),
        Route("PUT", "/v1/instances/{name}/policy", set_policy,
              "Set an instance's snapshot policy: retention counts per tier, how often, and "
              "where to replicate; its systemd timer is written and started",
              body={"keep": "string", "every": "string?", "replicate_to": "string?"},
              response=policy, params=name),
        Route("DELETE", "/v1/instances/{name}/policy", remove_policy,
              "Remove an instance's snapshot policy and its timer (its snapshots are kept); "
              "the policy config.yaml gives it, if any, applies again",
              response=object_schema({"removed": "string", "applies": "string?"}),
              params=name),
        Route("POST", "/v1/instances/{name}/policy/run", run_policy,
              "Run the policy now: snapshot, replicate, prune (what its timer does)",
              response=dataclass_schema(RunResult), params=name),
        Route("GET", "/v1/peers", list_peers, "List the hosts snapshots are sent to",
              response=array_of(dataclass_schema(PeerRecord))),
        Route("POST", "/v1/peers", add_peer,
              "Add (or replace) a host to send snapshots to: its front door's URL and an "
              "admin's token there, and what vouches for its certificate (a CA file or the "
              "certificate's SHA-256 fingerprint)",
              body={"name": "string", "url": "string", "token": "string?", "ca": "string?",
                    "fingerprint": "string?"},
              response=dataclass_schema(PeerRecord)),
        Route("DELETE", "/v1/peers/{peer}", remove_peer, "Forget a peer",
              response=object_schema({"removed": "string"})),
        Route("POST", "/v1/instances/{name}/send", send,
              "Send the instance's newest snapshot to a peer, as the difference from the "
              "newest snapshot both hold (streams each stream's bytes as they go)",
              body={"to": "string"}, streams=True, response=dataclass_schema(SendResult),
              params=name),
        Route("GET", "/v1/replicas/{source}/snapshots", held,
              "The snapshots of one dataset (?dataset=) received from host SOURCE",
              response=array_of({"type": "string"})),
        Route("POST", "/v1/replicas/{source}/receive", receive,
              "Receive a snapshot stream (the body: the stream, its length and CRC-32C) from host "
              "SOURCE; ?dataset=&snapshot=[&parent=]. Kept only whole and intact",
              raw_body=True, response=object_schema({"dataset": "string", "snapshot": "string",
                                                     "bytes": "integer"})),
    ]
