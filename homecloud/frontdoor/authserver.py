"""The auth endpoint: nginx asks it about every request to a route (auth_request), and sends
it the login form and refused requests. HTTP on a UNIX socket systemd holds
(hc-frontdoor-auth.socket), a thread per connection; only nginx reaches the socket, so the
client address and original URI it sends are trusted.

    GET  /_hc/auth/user | /_hc/auth/group/G    204 + X-HC-User, or 401/403 + X-HC-Deny
    GET  /_hc/denied                           the refused request's answer (302/401/403/429)
    GET  /_hc/login?next=/path                 the login form
    POST /_hc/login                            user, password, next: a session cookie
    POST /_hc/logout                           ends the session
"""

from __future__ import annotations

import http.server
import logging
import socket
import socketserver
import time
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

from homecloud.frontdoor import OWN_PREFIX, SESSION_COOKIE
from homecloud.frontdoor.credentials import StoredAccounts
from homecloud.frontdoor.decisions import (
    BANNED,
    Answer,
    AuthQuery,
    decide,
    login,
    refusal,
    safe_next,
)
from homecloud.frontdoor.pages import login_page
from homecloud.frontdoor.passwords import digest, new_secret

log = logging.getLogger("homecloud.frontdoor")
MAX_FORM = 16 << 10
REQUEST_TIMEOUT = 10.0


class AuthServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, listener: socket.socket, accounts: StoredAccounts,
                 session_seconds: int) -> None:
        super().__init__("", AuthHandler, bind_and_activate=False)
        self.socket = listener
        self.accounts = accounts
        self.session_seconds = session_seconds

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return  # nginx gave up on the request (its client left): nothing to report
        log.exception("unexpected error answering nginx")


class AuthHandler(http.server.BaseHTTPRequestHandler):
    server: AuthServer
    protocol_version = "HTTP/1.0"
    timeout = REQUEST_TIMEOUT
    server_version = "homecloud"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass  # per-request lines would flood the journal; bans are logged where they start

    def address_string(self) -> str:
        return self.client_address_header()

    def client_address_header(self) -> str:
        return self.headers.get("X-Real-IP", "unknown") if self.headers else "unknown"

    def _cookie_session(self) -> str | None:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = cookie.get(SESSION_COOKIE)
        return morsel.value if morsel else None

    def _send(self, answer: Answer, extra: dict[str, str] | None = None) -> None:
        body = answer.body.encode()
        self.send_response(answer.status)
        headers = {**answer.headers, **(extra or {})}
        if "Content-Type" not in headers:
            headers["Content-Type"] = ("text/html; charset=utf-8" if body.startswith(b"<")
                                       else "text/plain; charset=utf-8")
        headers["Cache-Control"] = "no-store"
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the base's naming
        url = urlsplit(self.path)
        if url.path.startswith(f"{OWN_PREFIX}auth/"):
            self._auth(url.path.removeprefix(f"{OWN_PREFIX}auth/"))
        elif url.path == f"{OWN_PREFIX}denied":
            self._denied()
        elif url.path == f"{OWN_PREFIX}login":
            target = safe_next(parse_qs(url.query).get("next", ["/"])[0])
            self._send(Answer(200, {}, login_page(target)))
        else:
            self._send(Answer(404, {}, "not found\n"))

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802 - the base's naming
        path = urlsplit(self.path).path
        if path == f"{OWN_PREFIX}login":
            self._login()
        elif path == f"{OWN_PREFIX}logout":
            session = self._cookie_session()
            if session:
                self.server.accounts.records.end_session(digest(session))
            self._send(Answer(303, {"Location": f"{OWN_PREFIX}login"}, ""),
                       {"Set-Cookie": self._cookie("", 0)})
        else:
            self._send(Answer(404, {}, "not found\n"))

    def _auth(self, rest: str) -> None:
        group = rest.removeprefix("group/") if rest.startswith("group/") else None
        query = AuthQuery(self.client_address_header(), group,
                          self.headers.get("Authorization"), self._cookie_session())
        decision = decide(query, self.server.accounts, time.time())
        if decision.allowed:
            self._send(Answer(204), {"X-HC-User": decision.user or ""})
            return
        status = 403 if decision.deny in ("forbidden", BANNED) else 401
        # nginx keeps a banned address's refusal (its ban cache) and stops asking for a while.
        headers = {"X-HC-Deny": decision.deny or "",
                   "X-Accel-Expires": str(decision.keep_seconds)}
        if decision.retry_after:
            headers["Retry-After"] = str(decision.retry_after)
        self._send(Answer(status), headers)

    def _denied(self) -> None:
        retry = self.headers.get("X-HC-Retry-After", "0")
        self._send(refusal(self.headers.get("X-HC-Deny", "login"),
                           self.headers.get("X-Original-URI", "/"),
                           self.headers.get("Accept", ""),
                           int(retry) if retry.isdigit() else 0))

    def _cookie(self, value: str, max_age: int) -> str:
        return (f"{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; "
                "SameSite=Lax")

    def _login(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_FORM:
            self._send(Answer(413, {}, "login form too large\n"))
            return
        form = parse_qs(self.rfile.read(int(length)).decode("utf-8", "replace"))
        user = form.get("user", [""])[0]
        password = form.get("password", [""])[0]
        target = safe_next(form.get("next", ["/"])[0])
        now = time.time()
        decision = login(self.client_address_header(), user, password, self.server.accounts,
                         now)
        if decision.deny == BANNED:
            answer = refusal(BANNED, target, "", decision.retry_after)
            self._send(Answer(429, answer.headers,
                              login_page(target, user, answer.body.strip())))
        elif not decision.allowed:
            self._send(Answer(401, {}, login_page(target, user,
                                                  "Wrong user name or password.")))
        else:
            session = new_secret()
            seconds = self.server.session_seconds
            self.server.accounts.records.add_session(digest(session), user, now + seconds, now)
            self._send(Answer(303, {"Location": target}, ""),
                       {"Set-Cookie": self._cookie(session, seconds)})
