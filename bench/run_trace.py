"""Where an `hc run` spends its time on the agent's side: the instance manager driven in-process
inside a dev host, as the agent drives it, with each step's time and the D-Bus round trips
counted. Complements run_bench.py (which times the whole command, CLI included, against the
same work by hand): this one resolves a few milliseconds where the whole command cannot.

Run it inside a running dev host (it uses that host's agent configuration, database and pool;
the agent may keep running, the names used are its own):

    hc-devhost exec NAME -- /opt/homecloud/venv/bin/python /PATH/TO/bench/run_trace.py \\
        [--mode command|boot] [--reps 12] [--network none|default]

command: `busybox` running `true` with the caller's stdio (as `hc run --rm IMAGE -- true`):
create, wait for the command, remove. boot: `debian` created until READY (removal untimed).
The first two repetitions warm up and are not kept. Not a test: run it on purpose.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from homecloud.agent.app import Agent
from homecloud.config import CONFIG_PATH, load_config
from homecloud.instances.spec import InstanceSpec
from homecloud.instances.steps import StepEvent
from homecloud.state.store import Store
from homecloud.storage.pool import open_pool
from homecloud.systemd.bus import SystemBus

WARMUP = 2


def count_calls(cls: type, name: str, counts: dict[str, int]) -> None:
    """Count the calls of ``cls.name`` (D-Bus round trips) into ``counts``."""
    original: Callable[..., Any] = getattr(cls, name)

    @functools.wraps(original)
    def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return original(*args, **kwargs)

    setattr(cls, name, counted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("command", "boot"), default="command")
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--network", choices=("none", "default"), default="none")
    args = parser.parse_args()
    config = load_config(CONFIG_PATH)
    agent = Agent(config=config, store=Store(config.database_path), pool=open_pool(config.pool))
    manager = agent.instances
    calls: dict[str, int] = defaultdict(int)
    for method in ("call", "get"):
        count_calls(SystemBus, method, calls)
    phases: dict[str, list[float]] = defaultdict(list)
    steps: dict[str, list[float]] = defaultdict(list)
    kept_calls: dict[str, int] = defaultdict(int)

    def progress(event: StepEvent) -> None:
        if event.phase == "done" and keep:
            steps[event.step].append(event.seconds)

    devnull = os.open(os.devnull, os.O_RDWR)
    for rep in range(args.reps + WARMUP):
        keep = rep >= WARMUP
        name = f"trace-{args.mode}-{os.getpid()}-{rep}"
        if args.mode == "command":
            spec = InstanceSpec(name=name, image="busybox", command=["true"],
                                network=args.network)
        else:
            spec = InstanceSpec(name=name, image="debian", network=args.network)
        calls.clear()
        began = time.perf_counter()
        manager.validate(spec)
        manager.create(spec, progress=progress, stdio=(devnull, devnull, devnull)
                       if args.mode == "command" else None)
        created = time.perf_counter()
        times = {"create": created - began}
        if args.mode == "command":
            manager.wait_finished(name)
            ended = time.perf_counter()
            manager.remove(name, force=True)
            times.update(wait=ended - created, remove=time.perf_counter() - ended)
        times["total"] = sum(times.values())
        timed_calls = dict(calls)
        if args.mode == "boot":
            manager.remove(name, force=True)  # untimed, as in run_bench.py
        if keep:
            for phase, seconds in times.items():
                phases[phase].append(seconds)
            for method, count in timed_calls.items():
                kept_calls[method] += count
    os.close(devnull)
    print(f"run_trace {args.mode}, --network {args.network}, {args.reps} repetitions, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for label, table in (("phase", phases), ("step", steps)):
        for key, samples in table.items():
            print(f"  {label} {key:<12} p50 {statistics.median(samples) * 1e3:8.2f} ms")
    for method, count in sorted(kept_calls.items()):
        print(f"  D-Bus {method:<12} {count / args.reps:8.1f} per repetition")
    return 0


if __name__ == "__main__":
    sys.exit(main())
