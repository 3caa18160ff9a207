"""DNS benchmark: homecloud's DNS server against dnsmasq serving the same 1,000 names, same run.

Starts both on loopback high ports — homecloud (`python -m homecloud.dns`) with a zone of 1,000
instances, dnsmasq with the same names in a hosts file (authoritative for the domain, nothing
forwarded) — then runs dnsperf against each in turn, interleaved, for a few rounds, and prints
queries per second, latency and the ratio. Needs dnsperf and dnsmasq
(apt-get install --no-install-recommends dnsperf dnsmasq). Not a test: run it on purpose.

    /opt/homecloud/venv/bin/python bench/dns_bench.py [--seconds 10] [--rounds 3]
        [--names 1000] [--clients 4] [--outstanding 100] [--results /tmp/results-dns.md]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# The server helpers are shared with the system tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "system"))
from dnsrun import dns_server, free_port, query  # noqa: E402

HOST, DOMAIN = "bench", "home.arpa"
ZONE = f"{HOST}.{DOMAIN}"


@dataclass
class Run:
    server: str
    qps: float
    latency_ms: float
    stddev_ms: float
    lost: int
    sent: int


def names(count: int) -> list[tuple[str, str]]:
    return [(f"i{n}", f"10.{100 + n // 62500}.{n // 250 % 250}.{n % 250 + 1}")
            for n in range(count)]


@contextlib.contextmanager
def dnsmasq(directory: Path, entries: list[tuple[str, str]], port: int) -> Iterator[None]:
    hosts = directory / "hosts"
    directory.chmod(0o755)  # dnsmasq reads the file after dropping to nobody
    hosts.write_text("".join(f"{address} {name}.{ZONE}\n" for name, address in entries))
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", f"--addn-hosts={hosts}", "--listen-address=127.0.0.1",
            "--bind-interfaces", f"--port={port}", "--cache-size=10000", "--pid-file=",
            f"--local=/{ZONE}/", "--log-facility=-"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if query(f"i0.{ZONE}", port=port, timeout=0.5).rr:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"dnsmasq did not start: {process.communicate()[1]}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def dnsperf(server: str, port: int, datafile: Path, args: argparse.Namespace) -> Run:
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile),
            "-l", str(args.seconds), "-c", str(args.clients), "-q", str(args.outstanding)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        if not match:
            raise RuntimeError(f"unexpected dnsperf output:\n{out}")
        return float(match[1])

    return Run(server=server,
               qps=number(r"Queries per second:\s+([\d.]+)"),
               latency_ms=number(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
               stddev_ms=number(r"Latency StdDev \(s\):\s+([\d.]+)") * 1000,
               lost=int(number(r"Queries lost:\s+(\d+)")),
               sent=int(number(r"Queries sent:\s+(\d+)")))


def summary(runs: list[Run], server: str) -> tuple[float, float]:
    mine = [r for r in runs if r.server == server]
    return (statistics.median(r.qps for r in mine),
            statistics.median(r.latency_ms for r in mine))


def report(runs: list[Run], args: argparse.Namespace, command: str) -> str:
    hc_qps, hc_lat = summary(runs, "homecloud")
    dm_qps, dm_lat = summary(runs, "dnsmasq")
    lines = [
        "# DNS: homecloud vs dnsmasq, same 1,000 names, same run",
        "",
        f"Date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"Command: `{command}`",
        f"dnsperf: {args.seconds} s per run, {args.clients} clients, {args.outstanding} "
        f"outstanding queries, UDP on 127.0.0.1, A queries for {args.names} names in turn; "
        f"{args.rounds} rounds, servers interleaved",
        "Machine: 2 cores shared by dnsperf, the server under test and other developers' "
        "work (noisy)",
        "",
        "| round | server | queries/s | avg latency (ms) | stddev (ms) | lost/sent |",
        "|---|---|---|---|---|---|",
    ]
    for n, run in enumerate(runs):
        lines.append(f"| {n // 2 + 1} | {run.server} | {run.qps:,.0f} | {run.latency_ms:.3f} | "
                     f"{run.stddev_ms:.3f} | {run.lost}/{run.sent} |")
    # Each round's pair ran back to back, so its ratio is the fairest figure on a busy machine.
    ratios = [hc.qps / dm.qps for hc, dm in zip(runs[::2], runs[1::2], strict=True)]
    lines += [
        "",
        f"Median: homecloud {hc_qps:,.0f} q/s ({hc_lat:.3f} ms), dnsmasq {dm_qps:,.0f} q/s "
        f"({dm_lat:.3f} ms).",
        f"Ratio homecloud/dnsmasq per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.2f} of the rate (target: at least 0.5), "
        f"latency x{hc_lat / dm_lat:.2f}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--outstanding", type=int, default=100)
    parser.add_argument("--results", type=Path, default=Path("/tmp/results-dns.md"))
    args = parser.parse_args()
    missing = [tool for tool in ("dnsperf", "dnsmasq") if shutil.which(tool) is None]
    if missing:
        print(f"needs {', '.join(missing)}: apt-get install --no-install-recommends dnsperf "
              "dnsmasq", file=sys.stderr)
        return 3
    entries = names(args.names)
    zone = {"host": HOST, "domain": DOMAIN,
            "instances": [{"name": name, "ipv4": address} for name, address in entries]}
    with tempfile.TemporaryDirectory(prefix="hc-dns-bench-") as tmp:
        directory = Path(tmp)
        datafile = directory / "queries"
        datafile.write_text("".join(f"{name}.{ZONE} A\n" for name, _ in entries))
        hc_port, dm_port = free_port(), free_port()
        config = {"listen": ["127.0.0.1"], "port": hc_port, "upstreams": [], "zone": zone}
        runs: list[Run] = []
        with dns_server(directory, config, port=hc_port), \
                dnsmasq(directory, entries, dm_port):
            for n in range(args.rounds):
                for server, port in (("homecloud", hc_port), ("dnsmasq", dm_port)):
                    run = dnsperf(server, port, datafile, args)
                    runs.append(run)
                    print(f"round {n + 1} {server:9} {run.qps:10,.0f} q/s  "
                          f"{run.latency_ms:.3f} ms  lost {run.lost}/{run.sent}", flush=True)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    text = report(runs, args, command)
    args.results.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
