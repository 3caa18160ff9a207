"""Consoles in the browser: a VM's screen (VNC) or an instance's terminal, through the front door.

The agent mints a single-use token for one instance and one front-door user (``tokens``, after
``targets`` has said what the console reaches); ``hc console`` prints the page's URL with the
token in its fragment. The page (``page/``: noVNC or xterm.js) opens a websocket that nginx
passes, after its login check, to the proxy (``proxy``: hc-console.service, socket-activated,
one process for all consoles), which redeems the token and joins the websocket to the VNC
socket or to a terminal.
"""

from homecloud.frontdoor.console_paths import (
    LOGIN_REDIRECT,
    NOVNC_DIR,
    NOVNC_PREFIX,
    PAGE_ASSETS_PREFIX,
    PAGE_DIR,
    PAGE_PREFIX,
    PROXY_SOCKET,
    RUN_DIR,
    SOCKET_PREFIX,
    XTERM_DIR,
    XTERM_PREFIX,
)
from homecloud.ownunits import CONSOLE_SOCKET_UNIT as SOCKET_UNIT
from homecloud.ownunits import CONSOLE_UNIT as SERVICE_UNIT

UNITS = (SOCKET_UNIT, SERVICE_UNIT)
TOKEN_SECONDS = 60

__all__ = ["LOGIN_REDIRECT", "NOVNC_DIR", "NOVNC_PREFIX", "PAGE_ASSETS_PREFIX", "PAGE_DIR",
           "PAGE_PREFIX", "PROXY_SOCKET", "RUN_DIR", "SERVICE_UNIT", "SOCKET_PREFIX",
           "SOCKET_UNIT", "TOKEN_SECONDS", "UNITS", "XTERM_DIR", "XTERM_PREFIX"]
