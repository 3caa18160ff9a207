"""cloud-init NoCloud seeds: the user-data check and the files rendered from cloud-init/."""

from __future__ import annotations

import pytest
import yaml

from homecloud.errors import UserError
from homecloud.images.vmimage import VmImage
from homecloud.instances.cloudinit import needs_seed, read_templates
from homecloud.instances.nocloud import (
    SeedNetwork,
    parse_user_data,
    render_seed,
    render_template,
)

TEMPLATES = read_templates()
NETWORK = SeedNetwork(mac="02:11:22:33:44:55", addresses=("10.42.0.7/24", "fd00:1::7/64"),
                      gateways=("10.42.0.1", "fd00:1::1"),
                      nameservers=("10.42.0.1", "fd00:1::1"), search="alpha.home.arpa")


@pytest.mark.parametrize(("text", "message"), [
    ("runcmd: [ls]\n", "--user-data is not cloud-config: its first line must be "
                       "'#cloud-config', not 'runcmd: [ls]'"),
    ("#!/bin/sh\necho hi\n", "--user-data is not cloud-config: its first line must be "
                             "'#cloud-config', not '#!/bin/sh'"),
    ("", "--user-data is not cloud-config: its first line must be '#cloud-config', not ''"),
    ("#cloud-config\nruncmd: [ls\n", "--user-data is not valid YAML at line 3: expected ',' "
                                     "or ']', but got '<stream end>'"),
    ("#cloud-config\n- a\n- b\n", "--user-data must be a YAML mapping (keys such as runcmd: or "
                                  "write_files:), not a list"),
])
def test_user_data_that_is_not_cloud_config_is_refused_in_one_line(text: str,
                                                                   message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_user_data(text)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_cloud_config_parses_to_its_mapping() -> None:
    assert parse_user_data("#cloud-config\nhostname: x\nruncmd: [[touch, /a]]\n") == {
        "hostname": "x", "runcmd": [["touch", "/a"]]}
    assert parse_user_data("#cloud-config\n") == {}


def test_meta_data_names_the_instance() -> None:
    seed = render_seed(TEMPLATES, instance_id="0123abcd", hostname="vm2")
    assert yaml.safe_load(seed.meta_data) == {"instance-id": "0123abcd",
                                              "local-hostname": "vm2"}
    assert seed.network_config is None
    assert set(seed.files()) == {"meta-data", "user-data"}


def test_without_user_data_root_gets_the_ssh_keys() -> None:
    seed = render_seed(TEMPLATES, instance_id="i", hostname="vm2",
                       ssh_keys=("ssh-ed25519 AAAA one\n", "ssh-ed25519 BBBB two"))
    assert seed.user_data.startswith("#cloud-config\n")
    config = parse_user_data(seed.user_data)
    assert config["ssh_authorized_keys"] == ["ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"]
    assert config["disable_root"] is False


def test_the_users_cloud_config_passes_through_unchanged() -> None:
    given = "#cloud-config\n# mine\nruncmd:\n  - [touch, /tmp/x]\n"
    assert render_seed(TEMPLATES, instance_id="i", hostname="h",
                       given_user_data=given).user_data == given


def test_ssh_keys_join_the_users_own() -> None:
    given = "#cloud-config\nssh_authorized_keys: [ssh-rsa OLD]\nruncmd: [[id]]\n"
    seed = render_seed(TEMPLATES, instance_id="i", hostname="h", ssh_keys=("ssh-rsa NEW",),
                       given_user_data=given)
    config = parse_user_data(seed.user_data)
    assert config == {"ssh_authorized_keys": ["ssh-rsa OLD", "ssh-rsa NEW"],
                      "runcmd": [["id"]]}


def test_network_config_v2_has_the_static_addresses_gateways_and_dns() -> None:
    seed = render_seed(TEMPLATES, instance_id="i", hostname="h", network=NETWORK)
    assert seed.network_config is not None
    config = yaml.safe_load(seed.network_config)
    assert config == {"version": 2, "ethernets": {"eth0": {
        "match": {"macaddress": "02:11:22:33:44:55"}, "set-name": "eth0",
        "addresses": ["10.42.0.7/24", "fd00:1::7/64"],
        "routes": [{"to": "0.0.0.0/0", "via": "10.42.0.1"}, {"to": "::/0", "via": "fd00:1::1"}],
        "nameservers": {"addresses": ["10.42.0.1", "fd00:1::1"],
                        "search": ["alpha.home.arpa"]}}}}
    assert "network-config" in seed.files()


def test_values_cannot_break_out_of_their_place() -> None:
    text = render_template('a: "@X@"\nb: 1\n', {"X": 'x"\nb: 2'})
    assert yaml.safe_load(text) == {"a": 'x"\nb: 2', "b": 1}
    with pytest.raises(KeyError):
        render_template('a: "@MISSING@"', {})


def test_a_seed_is_made_for_imported_disks_and_for_user_data() -> None:
    assert needs_seed(VmImage(layout="disk"), None)
    assert needs_seed(VmImage(layout="homecloud"), "#cloud-config\n")
    assert not needs_seed(VmImage(layout="homecloud"), None)
