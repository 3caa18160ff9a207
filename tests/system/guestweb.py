"""A page served from inside an instance, and the clients the system tests fetch it with: from
the dev host (busybox wget) and from inside another instance (bash's /dev/tcp; the Debian image
has no HTTP client)."""

from __future__ import annotations

from cli_checks import wait_for

from homecloud.devhost import DevHost

BUSYBOX = "/usr/bin/busybox"  # static: runs in the image as it is
BUSYBOX_BIND = f"{BUSYBOX}:/opt/busybox:ro"  # `hc run --bind` it for serve_page


def url(address: str, port: int = 80) -> str:
    return f"http://[{address}]:{port}/" if ":" in address else f"http://{address}:{port}/"


def fetch(host: DevHost, address_url: str) -> str | None:
    """GET the URL from inside the dev host; the body, or None when nothing answered."""
    # (busybox 1.35's wget crashes with -T: the subprocess timeout bounds it instead)
    result = host.run(BUSYBOX, "wget", "-q", "-O", "-", address_url, check=False, timeout=30)
    return result.stdout.strip() if result.returncode == 0 else None


def serve_page(host: DevHost, instance: str, page: str, address: str) -> None:
    """busybox httpd on port 80 of ``instance`` (run with BUSYBOX_BIND), started by the guest's
    own systemd, serving ``page``; returns once ``address`` answers with it."""
    host.hc("exec", instance, "--", "sh", "-c",
            f"mkdir -p /srv && echo '{page}' > /srv/index.html && "
            "systemd-run --unit=httpd /opt/busybox httpd -f -p 80 -h /srv")
    wait_for(f"httpd in {instance}", lambda: fetch(host, url(address)) == page)


def in_guest_tcp(host: DevHost, instance: str, address: str, port: int) -> str:
    """GET / from inside ``instance`` with bash's /dev/tcp (``address`` may be a name)."""
    script = (f"exec 3<>/dev/tcp/{address}/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 "
              "&& cat <&3")
    result = host.hc("exec", instance, "--", "bash", "-c", script, check=False)
    return result.stdout.split("\n\n", 1)[-1].strip()  # (text mode made \r\n \n)
