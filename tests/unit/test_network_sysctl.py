from homecloud.network.sysctl import enable_forwarding, enable_route_localnet


def make_tree(root, ifaces):
    for key in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text("0\n")
    for name, accept_ra in ifaces.items():
        (root / f"net/ipv6/conf/{name}").mkdir(parents=True, exist_ok=True)
        (root / f"net/ipv6/conf/{name}/accept_ra").write_text(f"{accept_ra}\n")
        (root / f"net/ipv4/conf/{name}").mkdir(parents=True, exist_ok=True)
        (root / f"net/ipv4/conf/{name}/route_localnet").write_text("0\n")


def test_forwarding_keeps_router_advertisements_on_slaac_interfaces(tmp_path):
    make_tree(tmp_path, {"eth0": 1, "eth1": 0, "default": 1, "lo": 1})
    changed = enable_forwarding(tmp_path)
    assert (tmp_path / "net/ipv4/ip_forward").read_text().strip() == "1"
    assert (tmp_path / "net/ipv6/conf/all/forwarding").read_text().strip() == "1"
    assert (tmp_path / "net/ipv6/conf/eth0/accept_ra").read_text().strip() == "2"
    assert (tmp_path / "net/ipv6/conf/default/accept_ra").read_text().strip() == "2"
    assert (tmp_path / "net/ipv6/conf/eth1/accept_ra").read_text().strip() == "0"
    assert (tmp_path / "net/ipv6/conf/lo/accept_ra").read_text().strip() == "1"
    assert "net.ipv4.ip_forward=1" in changed
    assert enable_forwarding(tmp_path) == []  # nothing left to change


def test_route_localnet(tmp_path):
    make_tree(tmp_path, {"hc0": 0})
    assert enable_route_localnet("hc0", tmp_path)
    assert not enable_route_localnet("hc0", tmp_path)
    assert (tmp_path / "net/ipv4/conf/hc0/route_localnet").read_text().strip() == "1"
