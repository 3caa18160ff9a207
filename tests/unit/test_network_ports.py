import socket

import pytest

from homecloud.errors import Conflict, UserError
from homecloud.network.hostports import check_host_port_free
from homecloud.network.ports import (
    PortMapping,
    check_not_published,
    check_unique,
    parse_port_mapping,
)


@pytest.mark.parametrize("text,expected", [
    ("8080:80", PortMapping(8080, 80, "tcp")),
    ("53:53/udp", PortMapping(53, 53, "udp")),
    ("1:65535/tcp", PortMapping(1, 65535, "tcp")),
    (" 443:8443 ", PortMapping(443, 8443, "tcp")),
])
def test_good_mappings(text, expected):
    assert parse_port_mapping(text) == expected


@pytest.mark.parametrize("text,message", [
    ("8080", "is invalid: use HOST:GUEST"),
    ("8080:", "is invalid"),
    (":80", "is invalid"),
    ("a:b", "is invalid"),
    ("80:80:80", "is invalid"),
    ("-1:80", "is invalid"),
    ("8080:80/sctp", "protocol 'sctp' is not supported"),
    ("8080:80/TCP", "is invalid"),
    ("0:80", "port 0 is out of range"),
    ("70000:80", "port 70000 is out of range"),
    ("80:65536", "port 65536 is out of range"),
    ("", "is invalid"),
    ("80\x00:80", "is invalid"),
])
def test_bad_mappings(text, message):
    with pytest.raises(UserError, match=message):
        parse_port_mapping(text)


def test_mapping_text_and_json_round_trip():
    mapping = PortMapping(8080, 80, "udp")
    assert str(mapping) == "8080:80/udp"
    assert PortMapping.from_json(mapping.to_json()) == mapping


def test_same_host_port_twice_is_refused_per_protocol():
    check_unique([PortMapping(53, 53, "tcp"), PortMapping(53, 53, "udp")])
    with pytest.raises(UserError, match="host port 8080/tcp is given twice"):
        check_unique([PortMapping(8080, 80), PortMapping(8080, 81)])


def test_port_published_by_another_instance_names_it():
    published = {"web": [PortMapping(8080, 80)], "me": [PortMapping(9090, 90)]}
    check_not_published("me", [PortMapping(9090, 90)], published)  # its own
    check_not_published("me", [PortMapping(8080, 80, "udp")], published)
    with pytest.raises(Conflict, match="already published by instance web"):
        check_not_published("me", [PortMapping(8080, 81)], published)


@pytest.mark.parametrize("kind,protocol", [(socket.SOCK_STREAM, "tcp"),
                                           (socket.SOCK_DGRAM, "udp")])
def test_port_used_on_the_host_is_refused(kind, protocol):
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(Conflict, match=f"host port {port}/{protocol} is already in use"):
            check_host_port_free(PortMapping(port, 80, protocol))
    check_host_port_free(PortMapping(port, 80, protocol))
