"""Lambda benchmark, same run, every request cold (a fresh process for each, forked by the
lambda's own sandboxed unit, which stays up while requests keep coming and stops 2 s after the
last one); also the first request of a burst, which starts that unit, on a fresh connection:

(1) latency p50/p95 of a `sh` hello and a Python hello through the front door (HTTPS, a public
    route, one kept-alive connection) against (a) `systemd-run --pipe --wait -p DynamicUser=yes`
    of the same script by hand and (b) nginx serving a static file over HTTPS (the floor);
(2) throughput with wrk (16 connections) through the door against nginx + fcgiwrap running the
    same script over HTTPS with the door's certificate (the classic process-per-request setup),
    --wrk-runs pairs, the two ways taking turns.

Boots its own dev host `bench-lambda` (or uses --devhost NAME); everything runs inside it. Not a
test: run it on purpose, as root. Needs wrk and fcgiwrap (Debian packages).

    /opt/homecloud/venv/bin/python bench/lambda_bench.py [--requests 200] [--seconds 10]
        [--wrk-runs 3] [--devhost NAME] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchhost import bench_devhost, devhost_arguments, log, parse_root_arguments  # noqa: E402
from timing import p50_p95_ms  # noqa: E402

from homecloud.devhost import DevHost  # noqa: E402
from homecloud.devhost.cgroups import devhost_cgroup, writable_hierarchies  # noqa: E402

CODE = "/srv/bench-lambda"
SCRIPTS = {"hello.sh": "#!/bin/sh\necho hello\n",
           "hello.py": "#!/usr/bin/python3 -I\nprint('hello')\n",
           # fcgiwrap wants CGI headers: the throughput runs use this one on both sides.
           "hello-cgi.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello\\n'\n"}
LAMBDAS = {"bench-sh": "hello.sh", "bench-py": "hello.py", "bench-cgi": "hello-cgi.sh"}
PORT = 8443  # the baseline nginx (static file and fcgiwrap)
FCGI_SOCKET = "/run/bench-fcgiwrap/fcgi.sock"
DOOR_CONF = "/var/lib/homecloud/frontdoor/nginx.conf"
NGINX_CONF = f"""
daemon off;
worker_processes 2;
pid /run/bench-nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path /tmp/bench-nginx-body;
    proxy_temp_path /tmp/bench-nginx-proxy;
    fastcgi_temp_path /tmp/bench-nginx-fastcgi;
    uwsgi_temp_path /tmp/bench-nginx-uwsgi;
    scgi_temp_path /tmp/bench-nginx-scgi;
    server {{
        listen 127.0.0.1:{PORT} ssl;
        ssl_certificate @CERT@;
        ssl_certificate_key @KEY@;
        location = /static {{ root {CODE}; try_files /static.txt =404; }}
        location = /cgi {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME {CODE}/hello-cgi.sh;
            fastcgi_pass unix:{FCGI_SOCKET};
        }}
    }}
}}
"""

# Runs inside the dev host: each way once per round, interleaved; HTTP over kept-alive
# connections, systemd-run as a subprocess.
LATENCY = r"""
import http.client, json, ssl, subprocess, sys, time
code, port, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
context = ssl.create_default_context(); context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
def http_way(port, path):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
    def way():
        conn.request("GET", path); response = conn.getresponse(); body = response.read()
        assert response.status == 200 and body.startswith(b"hello"), (path, response.status, body)
    return way
def run_way(script):
    argv = ["systemd-run", "--quiet", "--pipe", "--wait", "-p", "DynamicUser=yes",
            f"{code}/{script}"]
    def way():
        out = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL)
        assert out.returncode == 0 and out.stdout.startswith(b"hello"), out
    return way
ways = {"door sh": http_way(443, "/bench-sh"), "door python": http_way(443, "/bench-py"),
        "systemd-run sh": run_way("hello.sh"), "systemd-run python": run_way("hello.py"),
        "nginx static": http_way(port, "/static")}
samples = {way: [] for way in ways}
samples["door sh, first of a burst"] = []
for rep in range(min(reps, 20)):
    while subprocess.run(["systemctl", "is-active", "--quiet",
                          "hc-bench-sh.service"]).returncode == 0:
        time.sleep(0.2)
    start = time.perf_counter(); http_way(443, "/bench-sh")()
    samples["door sh, first of a burst"].append(time.perf_counter() - start)
order = list(ways)
for rep in range(-10, reps):
    shift = rep % len(order)
    for way in order[shift:] + order[:shift]:
        start = time.perf_counter(); ways[way](); elapsed = time.perf_counter() - start
        if rep >= 0:
            samples[way].append(elapsed)
print(json.dumps(samples))
"""


def cpu_seconds(name: str) -> float | None:
    """CPU time the dev host ``name`` has used (all its units; not wrk, which runs in the
    caller's cgroup): None without a cgroup2 hierarchy to read it from."""
    for hierarchy in writable_hierarchies():
        stat = hierarchy / devhost_cgroup(name).relative_to("/") / "cpu.stat"
        if stat.exists():
            found = re.search(r"^usage_usec (\d+)$", stat.read_text(), re.M)
            if found:
                return int(found.group(1)) / 1e6
    return None


def wrk(host: DevHost, url: str, seconds: int) -> dict[str, float | None]:
    """Requests per second wrk measured (16 connections, 2 threads), and the serving side's
    CPU time per request (everything in the dev host; the load-independent part)."""
    before = cpu_seconds(host.name)
    out = host.run("wrk", "-t2", "-c16", f"-d{seconds}s", url, timeout=seconds + 60).stdout
    after = cpu_seconds(host.name)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not match or not total:
        raise RuntimeError(f"wrk said: {out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed requests under wrk")
    cpu = None if before is None or after is None else \
        round((after - before) / int(total.group(1)) * 1e3, 3)
    return {"req/s": float(match.group(1)), "cpu ms/req": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per way")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--wrk-runs", type=int, default=3, help="wrk runs per way, taking turns")
    devhost_arguments(parser, "bench-lambda")
    args = parse_root_arguments(parser, "requests")
    if args.wrk_runs < 1:
        parser.error("--wrk-runs must be at least 1")
    results: dict[str, object] = {}
    with bench_devhost(args.devhost, "bench-lambda", args.keep) as host:
        for tool in ("wrk", "fcgiwrap"):
            if host.run("sh", "-c", f"command -v {tool}", check=False).returncode != 0:
                parser.error(f"{tool} is missing: apt-get install --no-install-recommends "
                             "wrk fcgiwrap")
        log("the scripts, two public lambda routes, nginx (static, fcgiwrap) on the side")
        host.run("mkdir", "-p", CODE)
        for name, text in SCRIPTS.items():
            host.run("tee", f"{CODE}/{name}", input=text)
        host.run("tee", f"{CODE}/static.txt", input="hello\n")
        host.run("chmod", "-R", "a+rX", CODE)
        host.run("chmod", "a+x", *(f"{CODE}/{name}" for name in SCRIPTS))
        for name, script in LAMBDAS.items():
            host.hc("lambda", "rm", name, check=False)
            host.hc("lambda", "deploy", name, f"{CODE}/{script}", "--route", f"/{name}",
                    "--public")
        # The door's own certificate and key, as its configuration names them.
        cert, key = (host.run("sed", "-n", rf"s/^ *{directive} \(.*\);$/\1/p",
                              DOOR_CONF).stdout.split("\n")[0].strip()
                     for directive in ("ssl_certificate", "ssl_certificate_key"))
        host.run("tee", f"{CODE}/nginx.conf",
                 input=NGINX_CONF.replace("@CERT@", cert).replace("@KEY@", key))
        for unit in ("bench-fcgiwrap", "bench-nginx"):
            host.run("systemctl", "stop", unit, check=False)
            host.run("systemctl", "reset-failed", unit, check=False)
        host.run("systemd-run", "--unit", "bench-fcgiwrap", "-p", "UMask=0000", "-p",
                 "User=www-data", "-p", "RuntimeDirectory=bench-fcgiwrap",
                 "fcgiwrap", "-c", "16", "-s", f"unix:{FCGI_SOCKET}")
        host.run("systemd-run", "--unit", "bench-nginx", "nginx", "-c", f"{CODE}/nginx.conf")
        host.run("bash", "-c", f"for i in $(seq 50); do [ -S {FCGI_SOCKET} ] && "
                 f"(exec 3<>/dev/tcp/127.0.0.1/{PORT}) 2>/dev/null && exit 0; sleep 0.1; done; "
                 "echo 'nginx or fcgiwrap did not start' >&2; exit 1")

        log(f"latency: {args.requests} cold requests per way, interleaved")
        out = host.run(host.python, "-c", LATENCY, CODE, str(PORT), str(args.requests),
                       timeout=3600).stdout
        latency = {way: p50_p95_ms(samples) for way, samples in json.loads(out).items()}
        results["latency"] = latency
        log(f"throughput: wrk, 16 connections, {args.seconds} s each, {args.wrk_runs} runs "
            "per way")
        urls = {"door sh": "https://127.0.0.1/bench-cgi",
                "nginx + fcgiwrap sh": f"https://127.0.0.1:{PORT}/cgi"}
        runs: dict[str, list[dict[str, float | None]]] = {way: [] for way in urls}
        for _ in range(args.wrk_runs):
            for way, url in urls.items():
                runs[way].append(wrk(host, url, args.seconds))
        results["throughput"] = runs
        results["load average"] = host.run("cat", "/proc/loadavg").stdout.split()[:3]
        for unit in ("bench-fcgiwrap", "bench-nginx"):
            host.run("systemctl", "stop", unit, check=False)
        for name in LAMBDAS:
            host.hc("lambda", "rm", name, check=False)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| way | p50 (ms) | p95 (ms) |\n|---|---|---|")
    for way, figures in latency.items():
        print(f"| {way} | {figures['p50_ms']} | {figures['p95_ms']} |")
    for kind in ("sh", "python"):
        door, by_hand = latency[f"door {kind}"], latency[f"systemd-run {kind}"]
        print(f"{kind}: door / systemd-run by hand, p50 {door['p50_ms'] / by_hand['p50_ms']:.2f}x"
              f", p95 {door['p95_ms'] / by_hand['p95_ms']:.2f}x (target <= 1.3x)")
    throughput = results["throughput"]
    assert isinstance(throughput, dict)
    for door, fcgi in zip(throughput["door sh"], throughput["nginx + fcgiwrap sh"],
                          strict=True):
        print(f"throughput: door {door['req/s']:.0f} req/s ({door['cpu ms/req']} ms CPU each), "
              f"nginx + fcgiwrap {fcgi['req/s']:.0f} req/s ({fcgi['cpu ms/req']} ms CPU each): "
              f"{door['req/s'] / fcgi['req/s']:.2f}x (target >= 1x)")
    print(f"load average at the end: {' '.join(results['load average'])}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
