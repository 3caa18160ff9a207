"""The authenticated HTTP front door: homecloud's own nginx in front of instances.

Pure logic (accounts, routes, bans, auth decisions, nginx configuration, pages) sits beside
its adapters (the state tables, password hashing, TLS files, nginx itself) and the two services
built on them: the agent's side (``service``: users, routes, rendering) and the auth endpoint
nginx asks about every request (``authserver``, its own unit so the door keeps authenticating
while the agent restarts).
"""

from homecloud.ownunits import AGENT_DOOR_SOCKET_UNIT as API_SOCKET_UNIT
from homecloud.ownunits import AUTH_SOCKET_UNIT, AUTH_UNIT, DOOR_UNIT

# The agent's API for the door alone (hcd.service listens on it too; see agent/server.py).
API_SOCKET = "/run/homecloud/door.sock"
API_SOCKET_NAME = "door"  # its FileDescriptorName= in the unit
UNITS = (DOOR_UNIT, AUTH_SOCKET_UNIT, AUTH_UNIT, API_SOCKET_UNIT)
RUN_DIR = "/run/hc-frontdoor"
AUTH_SOCKET = f"{RUN_DIR}/auth.sock"
# Everything homecloud serves itself lives under this path on every host name.
OWN_PREFIX = "/_hc/"
SESSION_COOKIE = "hc_session"
ADMIN_GROUP = "admin"
# The agent's API through the door: https://HOST/_hc/api/v1/... for members of ADMIN_GROUP.
API_PREFIX = f"{OWN_PREFIX}api/"
REMOTE_USER_HEADER = "X-Remote-User"
# A lambda route leads to that lambda's own socket (hc-NAME.socket) over SCGI; nginx names the
# route's path in this variable (a client's headers all arrive as HTTP_*: it cannot set it).
LAMBDA_RUN_DIR = "/run/hc-lambda"
ROUTE_VARIABLE = "HC_ROUTE"


def lambda_socket(name: str) -> str:
    return f"{LAMBDA_RUN_DIR}/{name}.sock"
