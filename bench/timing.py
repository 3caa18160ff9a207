"""Helpers shared by the benchmarks: percentiles and timing a call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at ``fraction`` of the sorted list (nearest rank, no interpolation)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def p50_p95_ms(samples: list[float]) -> dict[str, float]:
    """Median and 95th percentile of samples in seconds, as milliseconds."""
    return {"p50_ms": round(statistics.median(samples) * 1e3, 1),
            "p95_ms": round(percentile(samples, 0.95) * 1e3, 1)}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(reps: int, ways: dict[str, Callable[[int], float]],
                warmup: int = 0) -> dict[str, list[float]]:
    """Run each way once per repetition (``way(index)`` returns the seconds it measured),
    starting with a different way each time, so drift in the machine's load falls on all ways
    alike; the first ``warmup`` repetitions are not kept."""
    samples: dict[str, list[float]] = {way: [] for way in ways}
    order = list(ways)
    for rep in range(-warmup, reps):
        shift = rep % len(order)
        for way in order[shift:] + order[:shift]:
            elapsed = ways[way](rep + warmup)
            if rep >= 0:
                samples[way].append(elapsed)
    return samples
