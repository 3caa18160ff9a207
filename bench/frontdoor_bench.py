"""Front-door benchmark, same run: (1) proxy latency through the door (HTTPS, public route and
authenticated route with a bearer token) against the same page fetched straight from the
instance; (2) 10,000 wrong passwords from one address while another client's authenticated
requests are timed, against that client's latency with no flood.

Boots its own dev host `bench-frontdoor` (or uses --devhost NAME), builds the busybox image,
runs busybox httpd in an instance and routes to it. The latency clients run inside the dev host
(the instance's address is reachable only there) over kept-alive connections; the flood comes
from inside the dev host (127.0.0.1) and the timed client from this machine (the dev host's
address), so they are two client addresses. Not a test: run it on purpose, as root.

    /opt/homecloud/venv/bin/python bench/frontdoor_bench.py [--requests 500] [--wrong 10000]
        [--devhost NAME] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchhost import bench_devhost, devhost_arguments, log, parse_root_arguments  # noqa: E402
from timing import p50_p95_ms  # noqa: E402

from homecloud.devhost import DevHost  # noqa: E402

PAGE = "bench page"
PASSWORD = "bench password 1"

# Runs inside the dev host: times GETs over one kept-alive connection per way, interleaved.
LATENCY = r"""
import http.client, json, ssl, sys, time
direct, token, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
context = ssl.create_default_context(); context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
ways = {
    "direct": (http.client.HTTPConnection(direct, 80), "/", {}),
    "door public": (http.client.HTTPSConnection("127.0.0.1", 443, context=context), "/p/", {}),
    "door bearer": (http.client.HTTPSConnection("127.0.0.1", 443, context=context), "/b/",
                    {"Authorization": "Bearer " + token}),
}
samples = {way: [] for way in ways}
for rep in range(reps + 20):
    for way, (conn, path, headers) in ways.items():
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse(); response.read()
        assert response.status == 200, (way, response.status)
        if rep >= 20:
            samples[way].append(time.perf_counter() - start)
print(json.dumps(samples))
"""

# Runs inside the dev host: wrong passwords from 127.0.0.1, 4 threads, new connection each.
FLOOD = r"""
import base64, http.client, json, ssl, sys, threading, time
total = int(sys.argv[1])
context = ssl.create_default_context(); context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
wrong = "Basic " + base64.b64encode(b"bench:wrong password").decode()
statuses = {}
lock = threading.Lock()
def worker(count):
    conn = http.client.HTTPSConnection("127.0.0.1", 443, context=context)
    for _ in range(count):
        conn.request("GET", "/b/", headers={"Authorization": wrong})
        response = conn.getresponse(); response.read()
        with lock:
            statuses[response.status] = statuses.get(response.status, 0) + 1
start = time.perf_counter()
threads = [threading.Thread(target=worker, args=(total // 4,)) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"seconds": time.perf_counter() - start, "statuses": statuses}))
"""


def timed_client(address: str, token: str, reps: int, stop: threading.Event | None = None,
                 ) -> list[float]:
    """Authenticated GETs from this machine, one kept-alive connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(address, 443, context=context, timeout=30)
    samples = []
    for _ in range(reps):
        if stop is not None and stop.is_set():
            break
        start = time.perf_counter()
        conn.request("GET", "/b/", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        samples.append(time.perf_counter() - start)
    conn.close()
    return samples


def auth_cpu_seconds(host: DevHost) -> float:
    """CPU time hc-frontdoor-auth has used so far (its process's user + system time)."""
    pid = host.run("systemctl", "show", "-p", "MainPID", "--value",
                   "hc-frontdoor-auth.service").stdout.strip()
    if pid in ("", "0"):
        return 0.0
    fields = host.run("cat", f"/proc/{pid}/stat").stdout.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="timed requests per way")
    parser.add_argument("--wrong", type=int, default=10_000, help="wrong passwords sent")
    devhost_arguments(parser, "bench-frontdoor")
    args = parse_root_arguments(parser, "requests")
    results: dict[str, object] = {}
    with bench_devhost(args.devhost, "bench-frontdoor", args.keep) as host:
        if host.address is None:
            parser.error("the dev host shares the machine's network: two client addresses "
                         "are needed")
        log("busybox image, a web instance, a user, a token and two routes")
        if not any(i["name"] == "busybox" for i in host.hc("image", "ls", json=True)):
            host.hc("image", "build", "busybox", "-q")
        host.hc("rm", "-f", "benchweb", check=False)
        script = (f"for d in /www /www/p /www/b; do mkdir -p $d && echo '{PAGE}' > "
                  "$d/index.html; done && exec busybox httpd -f -p 80 -h /www")
        host.hc("run", "-d", "-q", "busybox", "--name", "benchweb", "--", "sh", "-c", script)
        direct = host.hc("inspect", "benchweb", json=True)["ipv4"]
        host.hc("user", "rm", "bench", check=False)
        host.run(*host.hc_argv(), "user", "add", "bench", input=PASSWORD + "\n")
        token = host.hc("user", "token", "bench").stdout.strip()
        for match, extra in (("/p", ["--public"]), ("/b", [])):
            host.hc("route", "rm", match, check=False)
            host.hc("route", "add", match, "--to", "benchweb:80", *extra)
        time.sleep(0.5)

        log(f"proxy latency: {args.requests} GETs per way, interleaved, inside the dev host")
        out = host.run(host.python, "-c", LATENCY, direct, token, str(args.requests),
                       timeout=600).stdout
        latency = {way: p50_p95_ms(samples) for way, samples in json.loads(out).items()}
        results["latency"] = latency

        log(f"no flood: {args.requests} authenticated GETs from this machine")
        quiet = p50_p95_ms(timed_client(host.address, token, args.requests))
        log(f"flood: {args.wrong} wrong passwords from 127.0.0.1 while timing again")
        during: list[float] = []
        stop = threading.Event()

        def measure() -> None:
            while not stop.is_set():
                during.extend(timed_client(host.address, token, 50, stop))

        thread = threading.Thread(target=measure)
        cpu_before = auth_cpu_seconds(host)
        thread.start()
        flood = json.loads(host.run(host.python, "-c", FLOOD, str(args.wrong),
                                    timeout=3600).stdout)
        stop.set()
        thread.join()
        results["flood"] = {"wrong_passwords": args.wrong, **flood,
                            "auth_endpoint_cpu_s": auth_cpu_seconds(host) - cpu_before,
                            "other_client_quiet": quiet,
                            "other_client_during": p50_p95_ms(during),
                            "other_client_requests_during": len(during)}
        listing = host.hc("user", "ls", json=True)
        results["bans"] = listing["bans"]
        for match in ("/p", "/b"):
            host.hc("route", "rm", match, check=False)
        host.hc("user", "rm", "bench", check=False)
        host.hc("rm", "-f", "benchweb", check=False)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| way | p50 (ms) | p95 (ms) |\n|---|---|---|")
    for way, figures in latency.items():
        print(f"| {way} | {figures['p50_ms']} | {figures['p95_ms']} |")
    flood_result = results["flood"]
    assert isinstance(flood_result, dict)
    print(f"\nflood: {args.wrong} wrong passwords in {flood_result['seconds']:.1f} s, statuses "
          f"{flood_result['statuses']}; the auth endpoint used "
          f"{flood_result['auth_endpoint_cpu_s']:.2f} s of CPU meanwhile")
    print(f"other client p50/p95: quiet {quiet['p50_ms']}/{quiet['p95_ms']} ms, during the "
          f"flood {flood_result['other_client_during']['p50_ms']}/"
          f"{flood_result['other_client_during']['p95_ms']} ms "
          f"({flood_result['other_client_requests_during']} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
