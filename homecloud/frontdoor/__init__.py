"""The authenticated HTTP front door: homecloud's own nginx in front of instances.

Pure logic (accounts, routes, bans, auth decisions, nginx configuration, pages) sits beside
its adapters (the state tables, password hashing, TLS files, nginx itself) and the two services
built on them: the agent's side (``service``: users, routes, rendering) and the auth endpoint
nginx asks about every request (``authserver``, its own unit so the door keeps authenticating
while the agent restarts).
"""

DOOR_UNIT = "hc-frontdoor.service"
AUTH_SOCKET_UNIT = "hc-frontdoor-auth.socket"
AUTH_UNIT = "hc-frontdoor-auth.service"
UNITS = (DOOR_UNIT, AUTH_SOCKET_UNIT, AUTH_UNIT)
RUN_DIR = "/run/hc-frontdoor"
AUTH_SOCKET = f"{RUN_DIR}/auth.sock"
# Everything homecloud serves itself lives under this path on every host name.
OWN_PREFIX = "/_hc/"
SESSION_COOKIE = "hc_session"
ADMIN_GROUP = "admin"
