"""The network service when its configuration cannot be applied: the agent runs on, and every
use of the network says why, in one line."""

from __future__ import annotations

import pytest

from homecloud.config import NetworkConfig
from homecloud.errors import UserError
from homecloud.network.ports import PortMapping
from homecloud.network.service import NetworkService
from homecloud.state.store import Store


@pytest.fixture
def broken(tmp_path) -> NetworkService:
    service = NetworkService(NetworkConfig(bridge="bad name!"), Store(tmp_path / "state.db"),
                             None, zone_path=tmp_path / "dns.json", host_name=lambda: "alpha")
    assert service.start() is None
    return service


MESSAGE = "network.bridge: bridge name 'bad name!' is invalid"


def test_a_bad_configuration_is_remembered_not_fatal(broken: NetworkService) -> None:
    assert broken.error is not None and broken.error.message.startswith(MESSAGE)
    with pytest.raises(UserError, match=MESSAGE):
        broken.plan  # noqa: B018
    with pytest.raises(UserError, match=MESSAGE):
        broken.check_ports("web", [PortMapping(8080, 80)])
    assert broken.describe() == {"bridge": "bad name!", "error": broken.error.message,
                                 "instances": []}
    assert broken.members() == [] and broken.addresses("web") is None


def test_removal_works_without_a_network(broken: NetworkService) -> None:
    broken.release("web")  # nothing to release, nothing to rebuild: no error
