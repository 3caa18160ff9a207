"""Wake benchmark, same run: a sleeping `debian` container (`--idle`) serving a page with
busybox httpd. (1) time to first byte of a connection to the sleeping instance against the
container's boot by hand (`hc start`, then the first byte straight from the guest); (2) refused
or reset connections out of CONNS, concurrent, across CYCLES sleep/wake cycles (`hc stop` puts
it to sleep); (3) throughput after a wake against the same image never put to sleep.

Boots its own dev host `bench-wake` (or uses --devhost NAME) and needs the `debian` image there
(built if missing, about a minute). Clients run inside the dev host. Not a test: run it on
purpose, as root.

    /opt/homecloud/venv/bin/python bench/wake_bench.py [--cycles 50] [--conns 20]
        [--devhost NAME] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchhost import bench_devhost, devhost_arguments, log, parse_root_arguments  # noqa: E402

from homecloud.devhost import DevHost  # noqa: E402

BUSYBOX_BIND = "/usr/bin/busybox:/opt/busybox:ro"
HTTPD_UNIT = ("[Service]\\nExecStart=/opt/busybox httpd -f -p 80 -h /srv\\n"
              "[Install]\\nWantedBy=multi-user.target\\n")

# Runs inside the dev host: N concurrent GETs; prints each one's seconds to first byte or the
# error.
FIRST_BYTES = r"""
import json, socket, sys, time
from concurrent.futures import ThreadPoolExecutor
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def get(_):
    start = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=120) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            if not s.recv(1):
                return "error: closed before a byte"
            first = time.perf_counter() - start
            while s.recv(65536):
                pass
            return first
    except OSError as exc:
        return f"error: {exc!r}"
with ThreadPoolExecutor(n) as pool:
    print(json.dumps(list(pool.map(get, range(n)))))
"""
# Runs inside the dev host: bytes per second fetching /big N times from each URL over new
# connections, alternating, so a change in the machine's load falls on both alike.
THROUGHPUT = r"""
import json, sys, time, urllib.request
urls, n = sys.argv[1:-1], int(sys.argv[-1])
seconds = dict.fromkeys(urls, 0.0); total = dict.fromkeys(urls, 0)
for _ in range(n):
    for url in urls:
        start = time.perf_counter()
        total[url] += len(urllib.request.urlopen(url, timeout=60).read())
        seconds[url] += time.perf_counter() - start
print(json.dumps([total[url] / seconds[url] for url in urls]))
"""


def make_web(host: DevHost, name: str, idle: str | None, port: int) -> str:
    host.hc("rm", "-f", name, check=False)
    extra = ["--idle", idle] if idle else []
    host.hc("run", "debian", "--name", name, "-p", f"{port}:80", "--bind", BUSYBOX_BIND, *extra)
    host.hc("exec", name, "--", "sh", "-c",
            "mkdir -p /srv && echo page > /srv/index.html && "
            "head -c 4194304 /dev/zero > /srv/big && "
            f"printf '{HTTPD_UNIT}' > /etc/systemd/system/httpd.service && "
            "systemctl enable --now httpd.service")
    return str(host.hc("inspect", name, json=True)["ipv4"])


def first_bytes(host: DevHost, address: str, port: int, n: int) -> list[float | str]:
    out = host.run("/usr/bin/python3", "-c", FIRST_BYTES, address, str(port), str(n),
                   timeout=300).stdout
    return list(json.loads(out))


def boot_by_hand(host: DevHost, name: str, address: str) -> float:
    """`hc start`, then GETs straight to the guest until the first byte comes."""
    host.hc("stop", name)
    start = time.perf_counter()
    host.hc("start", name)
    while not all(isinstance(t, float) for t in first_bytes(host, address, 80, 1)):
        time.sleep(0.01)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50, help="sleep/wake cycles")
    parser.add_argument("--conns", type=int, default=20, help="concurrent connections a wake")
    parser.add_argument("--fetches", type=int, default=100, help="4 MiB GETs per throughput")
    devhost_arguments(parser, "bench-wake")
    args = parse_root_arguments(parser, "cycles")
    results: dict[str, object] = {}
    with bench_devhost(args.devhost, "bench-wake", args.keep) as host:
        if not any(i["name"] == "debian" for i in host.hc("image", "ls", json=True)):
            log("building the debian image")
            host.hc("image", "build", "debian", "-q", timeout=900)
        log("two web instances: benchwake (--idle 1h) and benchawake")
        sleeper = make_web(host, "benchwake", "1h", 8081)
        awake = make_web(host, "benchawake", None, 8082)

        log("boot by hand (5 times) against first byte through a wake (5 times)")
        boots = [boot_by_hand(host, "benchwake", sleeper) for _ in range(5)]
        wakes = []
        for _ in range(5):
            host.hc("stop", "benchwake")
            start = time.perf_counter()
            answer = first_bytes(host, "127.0.0.1", 8081, 1)[0]
            wakes.append(time.perf_counter() - start if isinstance(answer, float) else None)
        boot, wake = statistics.median(boots), statistics.median(
            [w for w in wakes if w is not None] or [float("nan")])
        results["boot_s"], results["wake_first_byte_s"] = boot, wake
        results["wake_minus_boot_ms"] = (wake - boot) * 1000

        log(f"{args.cycles} cycles x {args.conns} concurrent connections")
        failures: list[str] = []
        for cycle in range(args.cycles):
            host.hc("stop", "benchwake")
            target = ("127.0.0.1", 8081) if cycle % 2 else (sleeper, 80)
            failures += [str(r) for r in first_bytes(host, *target, args.conns)
                         if not isinstance(r, float)]
        results["connections"] = args.cycles * args.conns
        results["failed"] = len(failures)
        results["failures"] = failures[:5]

        log("throughput after a wake and never asleep")
        host.hc("stop", "benchwake")
        first_bytes(host, sleeper, 80, 1)
        out = host.run("/usr/bin/python3", "-c", THROUGHPUT, f"http://{sleeper}/big",
                       f"http://{awake}/big", str(args.fetches), timeout=1200).stdout
        rates = dict(zip(("after_wake", "never_asleep"), json.loads(out), strict=True))
        results["throughput_MBps"] = {k: v / 1e6 for k, v in rates.items()}
        results["throughput_ratio"] = rates["after_wake"] / rates["never_asleep"]
        for name in ("benchwake", "benchawake"):
            host.hc("rm", "-f", name, check=False)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"boot by hand {boot * 1000:.0f} ms, first byte through a wake {wake * 1000:.0f} "
              f"ms: wake - boot = {results['wake_minus_boot_ms']:+.0f} ms (target <= +100)")
        print(f"{results['failed']} of {results['connections']} connections refused or reset "
              f"across {args.cycles} wakes (target 0)")
        rates_mbps = results["throughput_MBps"]
        assert isinstance(rates_mbps, dict)
        print(f"throughput after wake {rates_mbps['after_wake']:.0f} MB/s, never asleep "
              f"{rates_mbps['never_asleep']:.0f} MB/s: {results['throughput_ratio']:.2f}x "
              "(target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
