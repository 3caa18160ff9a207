"""Run inside a dev host by tests/system/test_instances.py: one InstanceManager operation per
call, the answer as one JSON line on stdout. Kept as a script so the tests drive the real
manager against the dev host's real systemd and pool without any mock.

    python instances_probe.py ACTION [JSON-ARGS]
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from homecloud.config import load_config
from homecloud.errors import HomecloudError
from homecloud.images.catalog import ImageCatalog, image_dataset
from homecloud.instances.manager import InstanceManager
from homecloud.instances.records import INSTANCE_PREFIX
from homecloud.instances.spec import Bind, InstanceSpec
from homecloud.state.store import Store
from homecloud.storage.embedded import ensure_embedded_pool
from homecloud.storage.pool import open_pool
from homecloud.systemd.bus import SystemBus
from homecloud.systemd.transient import Systemd

STATE = Path("/var/lib/homecloud-tests/state.db")
BUSYBOX = Path("/usr/bin/busybox")


def manager() -> InstanceManager:
    store = Store(STATE)
    config = load_config()
    ensure_embedded_pool(config.pool)  # as the agent does at start
    pool = open_pool(config.pool)
    return InstanceManager(store, pool, ImageCatalog(store, pool), SystemBus())


def make_busybox_image(m: InstanceManager, name: str, init: str | None) -> None:
    """A tiny image: busybox and its applets; ``init`` (a shell script) as its systemd."""
    if m.store.query("SELECT 1 FROM images WHERE name = ?", (name,)):
        return
    if m.pool.exists(image_dataset(name)):  # built by other means (hc image build): adopt it
        m.images.record(name, "test")
        return
    dataset = m.pool.create(image_dataset(name))
    root = dataset.path
    for d in ("usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "run", "var"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for d in ("bin", "sbin"):  # merged /usr, as nspawn expects an OS tree with /usr
        (root / d).symlink_to(f"usr/{d}")
    shutil.copy2(BUSYBOX, root / "usr/bin/busybox")
    for applet in ("sh", "echo", "cat", "sleep", "true", "false", "hostname", "env", "ls"):
        (root / "usr/bin" / applet).symlink_to("busybox")
    (root / "etc/os-release").write_text("ID=busybox\n")
    if init is not None:  # where nspawn --boot looks first: a stand-in for systemd
        systemd = root / "usr/lib/systemd/systemd"
        systemd.parent.mkdir(parents=True)
        systemd.write_text("#!/bin/sh\n" + init + "\n")
        systemd.chmod(0o755)
    m.images.record(name, "test")


def leaks(m: InstanceManager, name: str) -> dict[str, Any]:
    rows = m.store.query("SELECT name FROM instances WHERE name = ?", (name,))
    return {"row": bool(rows),
            "dataset": m.pool.exists(f"{INSTANCE_PREFIX}/{name}"),
            "unit": Systemd(m.systemd.bus).unit_status(f"hc-{name}.service") is not None}


def watch_unit(m: InstanceManager, unit: str) -> dict[str, Any]:
    """Signals a UnitWatch saw while a short transient unit ran, and how a wait for it ended."""
    from homecloud.systemd.bus import unit_path
    from homecloud.systemd.watch import UnitWatch

    watch = UnitWatch(None, unit_path(unit))
    try:
        subprocess.run(["systemd-run", "-q", f"--unit={unit}", "--no-block", "sleep", "0.2"],
                       check=True)
        deadline = time.monotonic() + 10
        while watch.signals == 0 and time.monotonic() < deadline:
            watch.wait(1.0)
        signals = watch.signals
    finally:
        watch.close()
    status = m.systemd.wait_finished(unit, timeout=30)
    return {"signals": signals, "active": status.active_state, "result": status.result}


def main() -> int:
    action = sys.argv[1]
    args: dict[str, Any] = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    m = manager()
    try:
        if action == "image":
            make_busybox_image(m, args["name"], args.get("init"))
            out: Any = None
        elif action == "create":
            args["binds"] = [Bind(**b) for b in args.get("binds", [])]
            start = time.perf_counter()
            info = m.create(InstanceSpec(**args))
            out = {**dataclasses.asdict(info), "seconds": time.perf_counter() - start}
        elif action in ("get", "start", "restart"):
            out = dataclasses.asdict(getattr(m, action)(args["name"]))
        elif action == "stop":
            out = dataclasses.asdict(m.stop(args["name"], args.get("timeout")))
        elif action == "remove":
            out = m.remove(args["name"], args.get("force", False))
        elif action == "list":
            start = time.perf_counter()
            infos = m.list()
            out = {"names": [i.name for i in infos], "states": [i.state for i in infos],
                   "seconds": time.perf_counter() - start}
        elif action == "leader":
            instance = m.instance(args["name"])
            out = m.driver(instance).leader_pid(instance)  # type: ignore[attr-defined]
        elif action == "reconcile":
            out = dataclasses.asdict(m.reconcile())
        elif action == "leaks":
            out = leaks(m, args["name"])
        elif action == "watch":
            out = watch_unit(m, args["unit"])
        elif action == "sql":
            m.store.execute(args["sql"], args.get("params", []))
            out = None
        else:
            raise SystemExit(f"unknown action {action}")
    except HomecloudError as exc:
        print(json.dumps({"error": exc.message, "kind": exc.kind}))
        return 0
    print(json.dumps({"result": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
