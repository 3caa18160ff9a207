"""Front-door routes, names, bans and the nginx configuration rendered from them (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.config import FrontdoorConfig, parse_config
from homecloud.errors import UserError
from homecloud.frontdoor.accounts import member_of, validate_account_name, validate_password
from homecloud.frontdoor.bans import BanPolicy
from homecloud.frontdoor.nginx_conf import DoorFiles, render
from homecloud.frontdoor.pages import login_page
from homecloud.frontdoor.routing import Route, clash, parse_match, parse_target

FILES = DoorFiles(Path("/tls/c.pem"), Path("/tls/k.pem"), ipv6=False)


@pytest.mark.parametrize("text, parsed", [
    ("blog.example.home", ("blog.example.home", "/")),
    ("Blog.Example.Home.", ("blog.example.home", "/")),
    ("/app", ("", "/app")), ("/app/", ("", "/app")),
    ("blog.home/app/x/", ("blog.home", "/app/x")),
])
def test_parse_match(text: str, parsed: tuple[str, str]) -> None:
    assert parse_match(text) == parsed


@pytest.mark.parametrize("text, message", [
    ("/", "give a host name, a path"), ("", "give a host name"),
    ("bad_host", "not a host name"), ("-x.home", "not a host name"),
    ("/a b", "no spaces"), ("/a;b", "no spaces"), ("/a/../b", "'..'"), ('/a"', "quotes"),
    ("/_hc", "belongs to homecloud"), ("/_hc/login", "belongs to homecloud"),
    ("/a{b}", "no spaces"),
])
def test_parse_match_refuses(text: str, message: str) -> None:
    with pytest.raises(UserError, match="route .* is invalid") as error:
        parse_match(text)
    assert message in str(error.value)


@pytest.mark.parametrize("text", ["web", "web:", "web:0", "web:65536", "Web:80", ":80",
                                  "web:8o"])
def test_parse_target_refuses(text: str) -> None:
    with pytest.raises(UserError):
        parse_target(text)


def test_parse_target() -> None:
    assert parse_target("web:8080") == ("web", 8080)


def test_clash_is_the_same_host_and_path() -> None:
    existing = [Route("", "/app", "web", 80), Route("blog.home", "/", "blog", 80)]
    assert clash(Route("", "/app", "other", 1), existing) == existing[0]
    assert clash(Route("blog.home", "/", "x", 1), existing) == existing[1]
    assert clash(Route("", "/app/sub", "x", 1), existing) is None  # nested: longest wins
    assert clash(Route("other.home", "/app", "x", 1), existing) is None


@pytest.mark.parametrize("name", ["Alice", "a:b", "-x", "", "x" * 33, "al ice", "é", "a\n"])
def test_bad_account_names(name: str) -> None:
    with pytest.raises(UserError, match="user name"):
        validate_account_name(name)


def test_passwords_and_groups() -> None:
    for bad in ("short", "x" * 1025, "control\x07chars"):
        with pytest.raises(UserError, match="password"):
            validate_password(bad)
    assert member_of(frozenset({"family"}), "family")
    assert member_of(frozenset(), None)
    assert not member_of(frozenset({"family"}), "work")
    assert member_of(frozenset({"admin"}), "work")


def test_ban_policy() -> None:
    policy = BanPolicy.from_config(FrontdoorConfig())
    assert (policy.failures, policy.window, policy.ban) == (5, 120.0, 300.0)
    assert policy.ban_until(4, 100.0) is None
    assert policy.ban_until(5, 100.0) == 400.0
    assert policy.since(1000.0) == 880.0


def test_frontdoor_config() -> None:
    config = parse_config({"frontdoor": {"http": 8080, "https": 8443, "max_body": "1M",
                                         "certificate": "/c", "key": "/k"}}).frontdoor
    assert (config.http, config.https, config.max_body, config.certificate) == (
        8080, 8443, 1 << 20, Path("/c"))
    for bad in ({"http": 0}, {"ban": "x"}, {"failures": True}, {"listen": 1}):
        with pytest.raises(UserError, match="frontdoor"):
            parse_config({"frontdoor": bad})


def test_render_routes() -> None:
    routes = [Route("", "/app", "web", 8080, address="10.0.0.2"),
              Route("blog.home", "/", "blog", 80, group="family", address="10.0.0.3"),
              Route("", "/open", "web", 80, public=True, address="10.0.0.2"),
              Route("", "/gone", "old", 80)]
    text = render(FrontdoorConfig(https=8443, max_body=1 << 20, timeout=7), FILES, routes)
    assert "listen 80 default_server;" in text and "listen [::]" not in text
    assert "return 301 https://$host:8443$request_uri;" in text
    assert "client_max_body_size 1048576;" in text and "client_header_timeout 7s;" in text
    assert "location = /app {" in text and "location /app/ {" in text
    assert "proxy_pass http://10.0.0.2:8080;" in text
    assert "server_name blog.home;" in text and "auth_request /_hc/auth/group/family;" in text
    # /app, /gone: two locations each; each server's console page and websocket: two more.
    assert text.count("auth_request /_hc/auth/user;") == 4 + 2 * 2
    assert 'return 502 "instance old has no address' in text
    open_block = text.split("location = /open {", 1)[1].split("}", 1)[0]
    assert "auth_request" not in open_block and "proxy_pass http://10.0.0.2:80;" in open_block
    assert 'location / {\n            return 404' in text  # no route at / on the default host


def test_render_bans_answered_by_nginx() -> None:
    """A banned address's refusal is kept per address (only answers that say so are kept) and
    answered 429 by nginx; the login form is rate limited per address."""
    text = render(FrontdoorConfig(), FILES, [Route("", "/app", "web", 80, address="10.0.0.2")])
    auth = text.split("location ^~ /_hc/auth/ {", 1)[1].split("}", 1)[0]
    assert "proxy_cache hc_bans;" in auth and "proxy_cache_key $remote_addr;" in auth
    assert "proxy_ignore_headers Cache-Control Expires;" in auth
    assert "proxy_cache_valid" not in text  # nothing kept but what the endpoint marks
    denied = text.split("location = /_hc/denied {", 1)[1].split("proxy_pass", 1)[0]
    assert "if ($hc_deny = banned) {" in denied
    assert 'return 429 "too many failed logins: try again in $hc_retry_after s\\n";' in denied
    assert "add_header Retry-After $hc_retry_after always;" in denied
    login = text.split("location = /_hc/login {", 1)[1].split("}", 1)[0]
    assert "limit_req zone=hc_logins burst=20 nodelay;" in login
    assert "limit_req_status 429;" in login
    assert "limit_req_zone $binary_remote_addr zone=hc_logins:4m rate=2r/s;" in text


def test_render_ipv6_and_default_ports() -> None:
    text = render(FrontdoorConfig(), DoorFiles(Path("/c"), Path("/k")),
                  [Route("", "/v6", "web", 80, address="fd00::2")])
    assert "listen [::]:443 ssl default_server;" in text
    assert "return 301 https://$host$request_uri;" in text
    assert "proxy_pass http://[fd00::2]:80;" in text


def test_login_page_escapes() -> None:
    page = login_page('/a"><script>', user="<b>", error="Wrong <password>")
    assert "<script>" not in page and "&lt;b&gt;" in page and "Wrong &lt;password&gt;" in page
