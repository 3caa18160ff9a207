import pytest

from homecloud.config import parse_config
from homecloud.errors import UserError
from homecloud.names import validate_instance_name, validate_name
from homecloud.sizes import format_size, parse_size


@pytest.mark.parametrize("name,message", [
    ("", "must not be empty"),
    ("x" * 64, "too long"),
    ("a/b", "is invalid"),
    ("a..b", "must not contain '..'"),
    ("..", "must not contain '..'"),
    ("has space", "is invalid"),
    ("tab\there", "is invalid"),
    ("nul\x00", "is invalid"),
    ("-dash", "is invalid"),
    (".hidden", "is invalid"),
])
def test_bad_names_are_refused_with_a_reason(name, message):
    with pytest.raises(UserError, match=message):
        validate_name(name, "image name")


@pytest.mark.parametrize("name", ["debian", "debian-12", "alpine3.18", "a", "x" * 63, "my_img"])
def test_good_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["Web", "a_b", "-a", "a-", "a.b"])
def test_instance_names_are_dns_labels(name):
    with pytest.raises(UserError):
        validate_instance_name(name)


def test_control_characters_are_shown_escaped():
    with pytest.raises(UserError) as info:
        validate_name("bad\x1bname")
    assert "\x1b" not in info.value.message


@pytest.mark.parametrize("text,value", [("512M", 512 << 20), ("20G", 20 << 30), ("1GiB", 1 << 30),
                                        ("100", 100), ("1.5K", 1536), ("2t", 2 << 40)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1G", "0", "12Q"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(UserError):
        parse_size(text, "--memory")


def test_format_size():
    assert format_size(512 << 20) == "512M"
    assert format_size(1536) == "1.5K"
    assert format_size(20 << 30) == "20G"


def test_config_defaults_and_overrides():
    config = parse_config(None)
    assert config.pool.driver == "auto" and config.pool.size == 20 << 30
    config = parse_config({"pool": {"driver": "btrfs", "size": "8G", "path": "/srv/pool"}})
    assert config.pool.size == 8 << 30 and str(config.pool.path) == "/srv/pool"


def test_network_config() -> None:
    from homecloud.config import NetworkConfig, PeerHostConfig

    assert parse_config(None).network == NetworkConfig(bridge="hc0", subnet4=None,
                                                       domain="home.arpa", host_name=None)
    config = parse_config({"network": {"bridge": "br-hc", "subnet4": "10.42.0.0/24",
                                       "host-name": "alpha", "children": [
                                           {"name": "beta", "addresses": "192.168.1.20"},
                                           {"name": "gamma", "addresses": ["fd00::7"]}]}})
    assert config.network.bridge == "br-hc" and config.network.host_name == "alpha"
    assert config.network.children == (PeerHostConfig("beta", ("192.168.1.20",)),
                                       PeerHostConfig("gamma", ("fd00::7",)))
    assert config.network.parent is None
    config = parse_config({"network": {"domain": "alpha.home.arpa", "parent": {
        "via": ["192.168.1.10", "fd00::10"], "subnets": "10.42.0.0/24"}}})
    assert config.network.parent == PeerHostConfig(None, (), ("192.168.1.10", "fd00::10"),
                                                   ("10.42.0.0/24",))


@pytest.mark.parametrize("data,message", [
    ({"pool": {"driver": "lvm"}}, "not one of"),
    ({"pool": {"colour": 1}}, "unknown setting"),
    ({"pool": "x"}, "must be a mapping"),
    ({"nonsense": 1}, "unknown setting"),
    ({"network": {"uplink": "eth0"}}, "network: unknown setting 'uplink'"),
    ({"network": {"children": {"beta": 1}}}, "children: expected a list of"),
    ({"network": {"children": [{"name": "beta"}]}}, "entry 1: needs 'addresses'"),
    ({"network": {"children": [{"name": "b", "addresses": []}]}}, "entry 1: needs 'addresses'"),
    ({"network": {"children": [{"addresses": "10.0.0.1"}]}}, "entry 1: 'name' is missing"),
    ({"network": {"children": [{"name": "b", "addresses": "10.0.0.1", "port": 53}]}},
     "entry 1: expected a mapping with addresses, name, subnets, via"),
    ({"network": {"children": [{"name": "b", "via": [7]}]}},
     "entry 1: via: expected a list of addresses"),
    ({"network": {"parent": {"name": "alpha", "subnets": "10.0.0.0/24"}}},
     "parent: expected a mapping with addresses, subnets, via"),
    ({"network": {"parent": "alpha"}}, "parent: expected a mapping"),
])
def test_bad_config_is_refused(data, message):
    with pytest.raises(UserError, match=message):
        parse_config(data)
