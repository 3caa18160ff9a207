"""Fork benchmark: BtrfsDriver.fork against the same snapshot made by hand in the same run.

Makes a btrfs pool on a loop file, puts a realistic root file system in a read-only image
dataset, then times N forks three ways, interleaved so they share the same conditions:

    driver    BtrfsDriver.fork("images/bench", "instances/...")   (what `hc run` does)
    btrfs     `btrfs subvolume snapshot SRC DST` as a subprocess     (by hand)
    ioctl     btrfsutil.create_snapshot(SRC, DST)                    (the floor)

and prints p50/p95 per way and the ratios. Needs root. Not a test: run it on purpose.

    python bench/fork_bench.py [--forks 50] [--rootfs PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import btrfsutil

# The loop-pool helpers are shared with the system tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "system"))
from pools import btrfs_loop_pool  # noqa: E402
from timing import percentile, timed  # noqa: E402

from homecloud.storage.btrfs import BtrfsDriver  # noqa: E402

DEFAULT_ROOTFS = Path("/var/tmp/hc-bench-rootfs")
ROOTFS_FILES = 20_000
ROOTFS_BYTES = 250 << 20
IMAGE = "images/bench"
WARMUP = 3


def _byte_pace(files: int) -> int:
    """Bytes allowed once ``files`` files are in: spend the budget evenly over the file count,
    so the big files met first in /usr do not use it all up."""
    return min(ROOTFS_BYTES, ROOTFS_BYTES * (files + 1) // ROOTFS_FILES + (32 << 20))


def make_rootfs(target: Path, source: Path = Path("/usr")) -> None:
    """Fill ``target`` with about 20k files / 250 MB copied from ``source``, keeping the tree:
    files that would run ahead of the byte budget are left out, the rest is copied in order."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    files = size = 0
    for directory, dirs, names in os.walk(source):
        dirs.sort()
        rel = Path(directory).relative_to(source)
        (partial / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(names):
            src, dst = Path(directory, name), partial / rel / name
            if src.is_symlink():
                dst.symlink_to(os.readlink(src))
            elif src.is_file() and size + src.stat().st_size <= _byte_pace(files):
                shutil.copy2(src, dst)
                size += src.stat().st_size
            else:
                continue
            files += 1
            if files >= ROOTFS_FILES:
                partial.rename(target)
                return
    partial.rename(target)


def tree_stats(path: Path) -> tuple[int, int]:
    files = size = 0
    for directory, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(directory, name))
            files += 1
            size += st.st_size
    return files, size


def run(forks: int, rootfs: Path) -> dict[str, object]:
    files, size = tree_stats(rootfs)
    with tempfile.TemporaryDirectory(prefix="hc-fork-bench-") as tmp, \
            btrfs_loop_pool(Path(tmp), 8 << 30) as driver:
        assert isinstance(driver, BtrfsDriver)
        image = driver.create(IMAGE)
        subprocess.run(["cp", "-a", "--reflink=never", f"{rootfs}/.", str(image.path)],
                       check=True)
        driver.set_readonly(IMAGE, True)
        btrfsutil.sync(driver.root)
        source = str(image.path)
        by_hand = driver.root / "by-hand"
        by_hand.mkdir()

        samples: dict[str, list[float]] = {"driver": [], "btrfs": [], "ioctl": []}
        for index in range(-WARMUP, forks):
            ways: dict[str, Callable[[], object]] = {
                "driver": lambda i=index: driver.fork(IMAGE, f"instances/f{i}"),
                "btrfs": lambda i=index: subprocess.run(
                    ["btrfs", "subvolume", "snapshot", source, str(by_hand / f"b{i}")],
                    check=True, stdout=subprocess.DEVNULL),
                "ioctl": lambda i=index: btrfsutil.create_snapshot(source, by_hand / f"i{i}"),
            }
            for way, fn in ways.items():
                elapsed = timed(fn)
                if index >= 0:
                    samples[way].append(elapsed)
        fork = driver.get("instances/f0")
        assert not fork.readonly and (fork.path / "bin").exists()

    p50 = {way: statistics.median(values) for way, values in samples.items()}
    p95 = {way: percentile(values, 0.95) for way, values in samples.items()}
    return {
        "forks": forks,
        "rootfs": {"path": str(rootfs), "files": files, "bytes": size},
        "p50_ms": {way: round(value * 1e3, 3) for way, value in p50.items()},
        "p95_ms": {way: round(value * 1e3, 3) for way, value in p95.items()},
        "ratio_p50": {"driver/btrfs": round(p50["driver"] / p50["btrfs"], 3),
                      "driver/ioctl": round(p50["driver"] / p50["ioctl"], 3)},
        "ratio_p95": {"driver/btrfs": round(p95["driver"] / p95["btrfs"], 3),
                      "driver/ioctl": round(p95["driver"] / p95["ioctl"], 3)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forks", type=int, default=50, help="forks per way (default 50)")
    parser.add_argument("--rootfs", type=Path, help="a root file system to fork (default: "
                        f"{DEFAULT_ROOTFS}, made from /usr when missing)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (loop devices, mounts)")
    rootfs = args.rootfs or DEFAULT_ROOTFS
    if args.rootfs is None and not rootfs.exists():
        print(f"making {rootfs} from /usr ...", file=sys.stderr)
        make_rootfs(rootfs)
    if not rootfs.is_dir():
        parser.error(f"{rootfs} is not a directory")

    result = run(args.forks, rootfs)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rootfs_info = result["rootfs"]
    assert isinstance(rootfs_info, dict)
    print(f"fork of {rootfs_info['path']} ({rootfs_info['files']} files, "
          f"{rootfs_info['bytes'] / (1 << 20):.0f} MiB), {result['forks']} forks per way")
    print(f"{'way':<8} {'p50 ms':>8} {'p95 ms':>8}")
    for way in ("driver", "btrfs", "ioctl"):
        print(f"{way:<8} {result['p50_ms'][way]:>8.3f} {result['p95_ms'][way]:>8.3f}")  # type: ignore[index]
    for key in ("ratio_p50", "ratio_p95"):
        ratios = result[key]
        assert isinstance(ratios, dict)
        print(f"{key}: " + ", ".join(f"{name} {value:.2f}" for name, value in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
