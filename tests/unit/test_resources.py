"""The shipped directories: found through the package, the same files as the repository's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from homecloud.resources import SHIPPED, shipped_dir

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_directory_is_the_repositorys(name: str) -> None:
    # The tests run from a checkout: homecloud/_data/NAME leads to the top-level NAME/.
    directory = shipped_dir(name)
    assert directory.parts[-3:] == ("homecloud", "_data", name)
    assert directory.resolve() == CHECKOUT / name
    assert any(directory.iterdir())


def test_what_each_directory_holds() -> None:
    assert {p.name for p in shipped_dir("units").iterdir()} >= {
        "hcd.socket", "hcd.service", "hc-dns.service"}
    assert (shipped_dir("service-sets") / "container.yaml").is_file()
    # A template that is valid YAML before and after its @NAME@s are filled in.
    meta_data = yaml.safe_load((shipped_dir("cloud-init") / "meta-data").read_text())
    assert meta_data == {"instance-id": "@INSTANCE_ID@", "local-hostname": "@HOSTNAME@"}


def test_an_unknown_directory_is_refused() -> None:
    with pytest.raises(ValueError, match="^homecloud ships no directory 'tests' "
                                         r"\(it ships units, service-sets, cloud-init\)$"):
        shipped_dir("tests")
