"""homecloud's DNS: the zones built from state (zone.py), answers (answer.py), the server
(server.py) and its entry point (``python -m homecloud.dns``, the hc-dns.service unit)."""

# Its name follows the hc-NAME.service of instances: no instance may be called "dns".
DNS_UNIT = "hc-dns.service"
