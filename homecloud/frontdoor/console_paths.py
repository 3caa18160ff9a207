"""Where the door serves browser consoles (homecloud/consoles): the page, its assets, noVNC and
xterm.js, and the websocket it passes to the console proxy. Under the door's reserved prefix,
so no user route can shadow a console."""

from __future__ import annotations

import sys
from pathlib import Path

from homecloud.frontdoor import OWN_PREFIX

RUN_DIR = "/run/hc-console"
PROXY_SOCKET = f"{RUN_DIR}/proxy.sock"
PAGE_PREFIX = f"{OWN_PREFIX}console/"
SOCKET_PREFIX = f"{OWN_PREFIX}console-ws/"
NOVNC_PREFIX = f"{OWN_PREFIX}novnc/"
XTERM_PREFIX = f"{OWN_PREFIX}xterm/"
PAGE_ASSETS_PREFIX = f"{OWN_PREFIX}console-page/"
NOVNC_DIR = "/usr/share/novnc"  # Debian's novnc
# The page's files (package data of homecloud.consoles) and xterm.js (npm @xterm/xterm and
# @xterm/addon-fit, which the bootstrap installs beside the venv: Debian's libjs-xterm 3.8.1
# ships an unbundled file).
PAGE_DIR = str(Path(__file__).resolve().parents[1] / "consoles" / "page")
XTERM_DIR = str(Path(sys.prefix) / "share" / "homecloud" / "npm" / "node_modules" / "@xterm")
# A console link opened without a login: to the login page and back, fragment (token) and all.
LOGIN_REDIRECT = ('<!doctype html><title>homecloud: log in</title><script>location.replace('
                  f'"{OWN_PREFIX}login?next="+encodeURIComponent(location.pathname+'
                  f'location.hash))</script><a href="{OWN_PREFIX}login">log in</a>')
