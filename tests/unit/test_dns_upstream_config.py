import json

import pytest

from homecloud.dns.config import DnsConfig, load_config, write_config
from homecloud.dns.upstream import parse_resolv_conf, parse_server, system_upstreams
from homecloud.dns.zone import InstanceEntry, ZoneDescription
from homecloud.errors import UserError


@pytest.mark.parametrize("text,server", [
    ("1.2.3.4", ("1.2.3.4", 53)),
    ("1.2.3.4:5353", ("1.2.3.4", 5353)),
    ("::1", ("::1", 53)),
    ("[::1]:5300", ("::1", 5300)),
    ("fe80::1%eth0", ("fe80::1%eth0", 53)),
])
def test_server_addresses(text, server):
    assert parse_server(text) == server


@pytest.mark.parametrize("text", ["dns.google", "1.2.3.4:x", "[::1]x", "1.2.3.4:0",
                                  "1.2.3.4:70000"])
def test_bad_server_addresses(text):
    with pytest.raises(UserError):
        parse_server(text)


def test_resolv_conf_nameservers_in_order(tmp_path):
    text = ("# generated\nsearch lan\nnameserver 192.168.1.1\nnameserver ::1 # local\n"
            "nameserver bogus\noptions edns0\n  nameserver 127.0.0.53\n")
    assert parse_resolv_conf(text) == [("192.168.1.1", 53), ("::1", 53), ("127.0.0.53", 53)]
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    assert system_upstreams(exclude=[("::1", 53)], path=path) == \
        [("192.168.1.1", 53), ("127.0.0.53", 53)]
    assert system_upstreams(path=tmp_path / "missing") == []


CONFIG = DnsConfig(zone=ZoneDescription(host="alpha", instances=(InstanceEntry("web"),)),
                   listen=("127.0.0.1", "::1"), port=5353, upstreams=(("::1", 5300),))


def test_config_round_trips_through_its_file(tmp_path):
    path = tmp_path / "dns.json"
    assert write_config(CONFIG, path)
    assert not write_config(CONFIG, path)  # unchanged: no reload needed
    assert load_config(path) == CONFIG
    assert CONFIG.endpoints == (("127.0.0.1", 5353), ("::1", 5353))


@pytest.mark.parametrize("content,message", [
    ("{", "is not valid JSON"),
    ("[]", "must hold a JSON object"),
    ('{"listen": []}', "KeyError"),
    ('{"zone": {"host": "a"}, "port": 0}', "port 0 is out of range"),
    ('{"zone": {"host": "a"}, "listen": ["nope"]}', "invalid DNS configuration"),
    ('{"zone": {"host": "a"}, "forward_timeout": 99}', "forward_timeout"),
])
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "dns.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_config(path)


def test_config_is_json():
    json.dumps(CONFIG.to_json())
