"""The files of a cloud-init NoCloud seed, rendered from the cloud-init/ templates (pure logic).

    meta-data       instance-id (new for every instance made, so cloud-init runs again in a
                    re-created one of the same name) and local-hostname
    user-data       the user's --user-data (cloud-config, checked here), or the template
                    giving root the --ssh-key keys; keys given with --user-data are added to
                    its ssh_authorized_keys
    network-config  version 2: the static addresses homecloud leased, its gateways and DNS

Templates mark each value as ``"@NAME@"`` (quoted: a template is valid YAML itself) and get it
as JSON (JSON is YAML), so no value can break out of its place in the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from homecloud.errors import UserError

CLOUD_CONFIG_HEADER = "#cloud-config"
TEMPLATES = ("meta-data", "user-data", "network-config")
_TOKEN = re.compile(r'"@([A-Z_]+)@"')


@dataclass(frozen=True)
class SeedNetwork:
    """What the guest's network-config says."""

    mac: str  # the NIC it applies to
    addresses: tuple[str, ...]  # CIDR, IPv4 and IPv6
    gateways: tuple[str, ...]
    nameservers: tuple[str, ...]
    search: str


@dataclass(frozen=True)
class SeedFiles:
    meta_data: str
    user_data: str
    network_config: str | None  # None: no network (--network none)

    def files(self) -> dict[str, str]:
        """File name -> contents, as they go into the seed."""
        out = {"meta-data": self.meta_data, "user-data": self.user_data}
        if self.network_config is not None:
            out["network-config"] = self.network_config
        return out


def parse_user_data(text: str) -> dict[str, Any]:
    """The cloud-config mapping in ``text``; a one-line UserError when it is not cloud-config
    (cloud-init would ignore it silently, and the guest would come up without it)."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip()
    if first != CLOUD_CONFIG_HEADER:
        shown = first[:40] if first.isprintable() else ascii(first[:40])
        raise UserError(f"--user-data is not cloud-config: its first line must be "
                        f"{CLOUD_CONFIG_HEADER!r}, not {shown!r}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "it does not parse"
        raise UserError(f"--user-data is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"--user-data must be a YAML mapping (keys such as runcmd: or "
                        f"write_files:), not a {type(data).__name__}")
    return data


def render_template(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with each ``"@NAME@"`` replaced by ``values[NAME]`` as JSON."""
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"cloud-init template value {key} is not given")
        return json.dumps(values[key])

    return _TOKEN.sub(replace, template)


def user_data(templates: Mapping[str, str], given: str | None,
              ssh_keys: Sequence[str]) -> str:
    keys = [key.strip() for key in ssh_keys if key.strip()]
    if given is None:
        return render_template(templates["user-data"], {"SSH_KEYS": keys})
    config = parse_user_data(given)
    if not keys:
        return given  # passed through as the user wrote it
    existing = config.get("ssh_authorized_keys") or []
    if not isinstance(existing, list):
        raise UserError("--user-data: ssh_authorized_keys must be a list of keys")
    config["ssh_authorized_keys"] = [*existing, *(k for k in keys if k not in existing)]
    return CLOUD_CONFIG_HEADER + "\n" + yaml.safe_dump(config, sort_keys=False)


def network_config(templates: Mapping[str, str], network: SeedNetwork) -> str:
    routes = [{"to": "0.0.0.0/0" if ":" not in gw else "::/0", "via": gw}
              for gw in network.gateways]
    return render_template(templates["network-config"], {
        "MAC": network.mac, "ADDRESSES": list(network.addresses), "ROUTES": routes,
        "NAMESERVERS": list(network.nameservers), "SEARCH": [network.search]})


def render_seed(templates: Mapping[str, str], *, instance_id: str, hostname: str,
                ssh_keys: Sequence[str] = (), given_user_data: str | None = None,
                network: SeedNetwork | None = None) -> SeedFiles:
    meta = render_template(templates["meta-data"],
                           {"INSTANCE_ID": instance_id, "HOSTNAME": hostname})
    return SeedFiles(meta_data=meta, user_data=user_data(templates, given_user_data, ssh_keys),
                     network_config=None if network is None
                     else network_config(templates, network))
