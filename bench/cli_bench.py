"""CLI start-up benchmark: `hc --version` and `hc image ls` (against the running agent) in a dev
host, beside the floors measured the same way in the same run:

    true            entering the dev host (nsenter + env) and running nothing
    python -c pass  the same interpreter hc runs on (the venv's), starting and exiting
    hc --version    argparse and hc's parser, no agent
    hc image ls     one API call to hcd over its socket, and a table

Every way is run N times from this machine through `nsenter` into the dev host (as
`hc-devhost exec` does), interleaved so they share the same conditions; p50/p95 and the ratios
are printed. Target (issue: foundation): each hc command under 100 ms wall time. Needs root.
Not a test: run it on purpose.

    python bench/cli_bench.py [--runs 30] [--devhost NAME] [--keep] [--json]

Without --devhost it boots its own dev host (bench-cli), builds the busybox image there so the
listing has a row, and removes the dev host at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from benchhost import devhost_arguments, measure_and_print, parse_root_arguments
from timing import interleaved, percentile, timed

from homecloud.devhost import DevHost

DEFAULT_DEVHOST = "bench-cli"
WARMUP = 3
TARGET_MS = 100.0


def ways(host: DevHost) -> dict[str, list[str]]:
    """What is timed: name -> argv inside the dev host."""
    hc = str(host.spec.venv_bin / "hc")
    return {
        "true": ["true"],
        "python -c pass": [host.python, "-c", "pass"],
        "hc --version": [hc, "--version"],
        "hc image ls": [hc, "image", "ls"],
    }


def run_inside(host: DevHost, argv: list[str]) -> None:
    subprocess.run(host.command(argv), env=host.environment(), check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def measure(host: DevHost, runs: int) -> dict[str, list[float]]:
    def way(argv: list[str]) -> Callable[[int], float]:
        return lambda _index: timed(partial(run_inside, host, argv))

    return interleaved(runs, {name: way(argv) for name, argv in ways(host).items()}, WARMUP)


def summarize(samples: dict[str, list[float]]) -> dict[str, Any]:
    p50 = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    p95 = {name: percentile(values, 0.95) * 1e3 for name, values in samples.items()}
    hc_ways = [name for name in samples if name.startswith("hc ")]
    return {
        "p50_ms": {name: round(value, 1) for name, value in p50.items()},
        "p95_ms": {name: round(value, 1) for name, value in p95.items()},
        # How much more than the interpreter alone, and than entering the dev host at all.
        "ratio_p50": {f"{name} / python -c pass": round(p50[name] / p50["python -c pass"], 2)
                      for name in hc_ways},
        "beyond_true_p50_ms": {name: round(p50[name] - p50["true"], 1)
                               for name in [*hc_ways, "python -c pass"]},
        "under_target": {name: p50[name] < TARGET_MS for name in hc_ways},
    }


def prepare(host: DevHost, own: bool) -> int:
    """Start the agent; on a dev host of our own, give the listing a row. Returns how many
    images `hc image ls` lists."""
    images = json.loads(host.hc("image", "ls", "--json").stdout)
    if own and not images:
        host.hc("image", "build", "busybox", "-q")
        images = json.loads(host.hc("image", "ls", "--json").stdout)
    return len(images)


def print_report(result: dict[str, Any]) -> None:
    print(f"{result['runs']} runs per way in dev host {result['devhost']} "
          f"(`hc image ls` lists {result['images']} image(s)); all via nsenter")
    print(f"{'way':<16} {'p50 ms':>8} {'p95 ms':>8} {'beyond true':>12}")
    for name in result["p50_ms"]:
        beyond = result["beyond_true_p50_ms"].get(name)
        print(f"{name:<16} {result['p50_ms'][name]:>8.1f} {result['p95_ms'][name]:>8.1f} "
              f"{'' if beyond is None else f'{beyond:>+11.1f}':>12}")
    for name, ratio in result["ratio_p50"].items():
        print(f"ratio p50 {name}: {ratio:.2f}")
    for name, under in result["under_target"].items():
        print(f"{name}: p50 {'under' if under else 'OVER'} the {TARGET_MS:.0f} ms target")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per way (default 30)")
    devhost_arguments(parser, DEFAULT_DEVHOST)
    args = parse_root_arguments(parser, "runs")

    def measure_in(host: DevHost) -> dict[str, Any]:
        images = prepare(host, own=args.devhost is None)  # also starts the agent
        return {"runs": args.runs, "images": images, **summarize(measure(host, args.runs))}
    return measure_and_print("cli_bench", args, DEFAULT_DEVHOST, measure_in, print_report)


if __name__ == "__main__":
    sys.exit(main())
