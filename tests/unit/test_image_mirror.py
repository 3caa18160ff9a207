"""Finding the Debian mirror in apt's sources (homecloud.images.mirror)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.errors import HostError
from homecloud.images.mirror import (
    AptSource,
    find_debian_mirror,
    parse_deb822,
    parse_one_line,
    pick_debian_mirror,
)

DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

NODESOURCE_SOURCES = """\
Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/nodesource.gpg
"""

ONE_LINE = """\
# the security archive first, to show it is never picked
deb http://security.debian.org/debian-security bookworm-security main contrib
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://ftp.de.debian.org/debian/ bookworm main non-free-firmware
deb-src http://ftp.de.debian.org/debian/ bookworm main
deb http://ftp.de.debian.org/debian/ bookworm-updates main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
"""  # noqa: E501


def test_deb822_stanzas_and_comments() -> None:
    assert parse_deb822(DEBIAN_SOURCES) == [
        AptSource("http://deb.debian.org/debian", ("bookworm", "bookworm-updates"), ("main",)),
        AptSource("http://deb.debian.org/debian-security", ("bookworm-security",), ("main",)),
    ]


def test_deb822_skips_disabled_and_source_only_stanzas_and_joins_continuations() -> None:
    text = """\
Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Enabled: no

Types: deb deb-src
URIs: http://a.example/debian
 http://b.example/debian
Suites: trixie
Components: main contrib
"""
    assert parse_deb822(text) == [
        AptSource("http://a.example/debian", ("trixie",), ("main", "contrib")),
        AptSource("http://b.example/debian", ("trixie",), ("main", "contrib")),
    ]


def test_one_line_format_with_options() -> None:
    sources = parse_one_line(ONE_LINE)
    assert [s.uri for s in sources] == [
        "http://security.debian.org/debian-security",
        "http://ftp.de.debian.org/debian/",
        "http://ftp.de.debian.org/debian/",
        "https://packages.cloud.google.com/apt",
    ]
    assert sources[1] == AptSource("http://ftp.de.debian.org/debian/", ("bookworm",),
                                   ("main", "non-free-firmware"))


def test_picks_the_main_archive_not_security_updates_or_third_party() -> None:
    sources = parse_deb822(NODESOURCE_SOURCES) + parse_deb822(DEBIAN_SOURCES)
    assert pick_debian_mirror(sources) == "http://deb.debian.org/debian"
    assert pick_debian_mirror(parse_one_line(ONE_LINE), "bookworm") == \
        "http://ftp.de.debian.org/debian"


def test_prefers_a_source_serving_the_release() -> None:
    sources = [AptSource("http://old.example/debian", ("bullseye",), ("main",)),
               AptSource("http://new.example/debian", ("trixie",), ("main",))]
    assert pick_debian_mirror(sources, "trixie") == "http://new.example/debian"
    assert pick_debian_mirror(sources, "bookworm") == "http://old.example/debian"


def test_nothing_suitable() -> None:
    assert pick_debian_mirror(parse_deb822(NODESOURCE_SOURCES)) is None
    assert pick_debian_mirror([AptSource("cdrom:[Debian]/", ("bookworm",), ("main",))]) is None


def test_find_reads_both_formats_under_a_root(tmp_path: Path) -> None:
    lists = tmp_path / "etc/apt/sources.list.d"
    lists.mkdir(parents=True)
    (lists / "nodesource.sources").write_text(NODESOURCE_SOURCES)
    (lists / "debian.sources.disabled").write_text(DEBIAN_SOURCES)  # not *.sources: ignored
    with pytest.raises(HostError, match=r"set `images.mirror`.*--mirror"):
        find_debian_mirror(root=tmp_path)
    (tmp_path / "etc/apt/sources.list").write_text(ONE_LINE)
    assert find_debian_mirror(root=tmp_path) == "http://ftp.de.debian.org/debian"


def test_find_without_any_apt_configuration(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="no Debian mirror found"):
        find_debian_mirror(root=tmp_path)
