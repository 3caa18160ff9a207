"""InstanceSpec validation: one clear line for each bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.cli.instances import parse_env
from homecloud.errors import UserError
from homecloud.instances.spec import Bind, HostLimits, InstanceSpec, parse_memory
from homecloud.network.ports import PortMapping

HOST = HostLimits(cpus=2, memory=4 << 30)


def spec(**kw: object) -> InstanceSpec:
    return InstanceSpec(**{"name": "web", "image": "debian", **kw})  # type: ignore[arg-type]


def test_good_spec_round_trips(tmp_path: Path) -> None:
    good = spec(cpus=1.5, memory=512 << 20, env={"A_1": "x=y"}, restart="always",
                binds=[Bind(str(tmp_path), "/data", True)])
    assert good.validate(HOST) is good
    assert InstanceSpec.from_json(good.to_json()) == good


def test_ports_round_trip_and_are_parsed() -> None:
    from homecloud.instances.spec import parse_ports

    ports = parse_ports(["8080:80", "53:53/udp"])
    assert ports == (PortMapping(8080, 80), PortMapping(53, 53, "udp"))
    good = spec(ports=ports)
    assert InstanceSpec.from_json(good.to_json()) == good
    old_row = {k: v for k, v in spec().to_json().items() if k != "ports"}
    assert InstanceSpec.from_json(old_row).ports == ()  # rows from before networking


def test_network_mode_round_trips_and_defaults_for_old_rows() -> None:
    assert spec().network == "default" and spec().networked
    none = spec(network="none")
    assert none.validate(HOST) is none and not none.networked
    assert InstanceSpec.from_json(none.to_json()) == none
    old_row = {k: v for k, v in spec().to_json().items() if k != "network"}
    assert InstanceSpec.from_json(old_row).network == "default"  # rows from before the option


def test_command_mode_never_boots() -> None:
    assert spec(command=["true"]).boot is False
    assert spec().boot is True


@pytest.mark.parametrize(("kw", "message"), [
    ({"name": "Web"}, "instance name 'Web' is invalid"),
    ({"name": "a" * 64}, "too long"),
    ({"name": "-web"}, "is invalid"),
    ({"name": "we_b"}, "is invalid"),
    ({"image": "../x"}, "image name"),
    ({"cpus": 0}, "--cpus 0 is invalid"),
    ({"cpus": -1}, "--cpus -1 is invalid"),
    ({"cpus": float("nan")}, "--cpus nan is invalid"),
    ({"cpus": 0.001}, "too small"),
    ({"cpus": 3}, "--cpus 3 is more than this host has \\(2\\)"),
    ({"memory": 1 << 20}, "--memory 1.0M is too small: a container needs at least 32M"),
    ({"memory": 8 << 30}, "--memory 8.0G is more than this host has \\(4.0G\\)"),
    ({"env": {"1A": "x"}}, "--env '1A' is not a valid variable name"),
    ({"env": {"A-B": "x"}}, "not a valid variable name"),
    ({"env": {"A": "x\ny"}}, "must not contain newlines"),
    ({"binds": [Bind("/nonexistent-hc", "/x")]}, "--bind source /nonexistent-hc does not exist"),
    ({"binds": [Bind("/tmp", "x")]}, "--bind target 'x' must be an absolute path"),
    ({"binds": [Bind("tmp", "/x")]}, "--bind source 'tmp' must be an absolute path"),
    ({"binds": [Bind("/tmp", "/x/../y")]}, "must not contain '..'"),
    ({"binds": [Bind("/tmp", "/x"), Bind("/usr", "/x")]}, "given twice"),
    ({"restart": "sometimes"}, "--restart 'sometimes' is invalid"),
    ({"kind": "wasm"}, "kind 'wasm' is not supported"),
    ({"command": []}, "the command after `--` is empty"),
    ({"network": "host"}, "--network 'host' is invalid: use default or none"),
    ({"network": "none", "ports": (PortMapping(8080, 80),)},
     "-p needs networking: an instance with --network none has loopback only; drop -p or "
     "--network none"),
    ({"name": "dns"}, "instance name 'dns' is reserved \\(homecloud's DNS server runs as "
                      "hc-dns.service\\); choose another"),
])
def test_bad_input(kw: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        spec(**kw).validate(HOST)
    assert "\n" not in info.value.message


def test_parsers() -> None:
    assert Bind.parse("/a:/b") == Bind("/a", "/b", False)
    assert Bind.parse("/a:/b:ro") == Bind("/a", "/b", True)
    for bad in ("/a", "/a:", "/a:/b:rx", ":/b"):
        with pytest.raises(UserError, match="--bind"):
            Bind.parse(bad)
    assert parse_env(["A=1", "B==2"]) == {"A": "1", "B": "=2"}
    with pytest.raises(UserError, match="use KEY=VALUE"):
        parse_env(["A"])
    assert parse_memory("512M") == 512 << 20
    with pytest.raises(UserError, match="--memory"):
        parse_memory("lots")
