"""hc-dns, homecloud's DNS server. Pure logic: the zones built from a description (zone.py),
reading queries (wire.py), answers (answer.py) and what to do with each packet (resolver.py);
I/O: the sockets (server.py), asking other servers (upstream.py), and the entry point
(``python -m homecloud.dns``, the hc-dns.service unit). It imports nothing of the agent: the
agent writes its configuration file (config.py) and signals it."""

# Its name follows the hc-NAME.service of instances: no instance may be called "dns".
from homecloud.ownunits import DNS_UNIT

__all__ = ["DNS_UNIT"]
