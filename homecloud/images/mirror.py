"""Find the Debian mirror this machine already uses, from apt's sources.

Building from the mirror apt uses means a host behind a local mirror or proxy builds images
without extra configuration. Both source formats are read: deb822 ``*.sources`` files
(``URIs:``/``Suites:`` stanzas) and one-line ``deb URI SUITE COMPONENT...`` lists. Only the main
archive qualifies: not the security archive, not -updates/-backports, not third-party repos.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from homecloud.errors import HostError

# Suites the main Debian archive serves; third-party repositories use other names ("nodistro",
# "cloud-sdk-bookworm") and are skipped.
DEBIAN_SUITES = frozenset({
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental",
})
_URI_SCHEMES = ("http://", "https://", "file:/")


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` source: a repository URI with its suites and components."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def _deb822_stanzas(text: str) -> Iterable[dict[str, str]]:
    """Stanzas of a deb822 file as {lower-case field: value}; continuation lines are joined."""
    stanza: dict[str, str] = {}
    key = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, ""
            continue
        if line[0] in " \t":
            if key:
                stanza[key] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            stanza[key] = value.strip()
    if stanza:
        yield stanza


def parse_deb822(text: str) -> list[AptSource]:
    """The enabled ``deb`` sources of a deb822 ``.sources`` file."""
    sources: list[AptSource] = []
    for stanza in _deb822_stanzas(text):
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(stanza.get("suites", "").split())
        components = tuple(stanza.get("components", "").split())
        sources.extend(AptSource(uri, suites, components)
                       for uri in stanza.get("uris", "").split())
    return sources


_OPTIONS_RE = re.compile(r"\[[^\]]*\]")


def parse_one_line(text: str) -> list[AptSource]:
    """The ``deb`` sources of a one-line ``sources.list`` file."""
    sources = []
    for raw in text.splitlines():
        line = _OPTIONS_RE.sub(" ", raw.split("#", 1)[0]).split()
        if len(line) < 3 or line[0] != "deb":
            continue
        sources.append(AptSource(line[1], (line[2],), tuple(line[3:])))
    return sources


def _is_main_archive(source: AptSource) -> bool:
    return (source.uri.startswith(_URI_SCHEMES) and "security" not in source.uri
            and (not source.components or "main" in source.components))


def pick_debian_mirror(sources: Iterable[AptSource], release: str | None = None) -> str | None:
    """The URI of the main Debian archive among ``sources``, or None.

    A source serving ``release`` itself wins; otherwise any source serving a plain Debian suite
    (the same archive serves every release).
    """
    fallback = None
    for source in sources:
        if not _is_main_archive(source):
            continue
        suites = set(source.suites)
        if release and release in suites:
            return source.uri.rstrip("/")
        if fallback is None and suites & DEBIAN_SUITES:
            fallback = source.uri.rstrip("/")
    return fallback


def read_apt_sources(root: Path = Path("/")) -> list[AptSource]:
    """Every ``deb`` source configured under ``root``/etc/apt, in apt's reading order."""
    apt = root / "etc" / "apt"
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list")),
             *sorted((apt / "sources.list.d").glob("*.sources"))]
    sources: list[AptSource] = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        sources.extend(parse_deb822(text) if path.suffix == ".sources" else parse_one_line(text))
    return sources


def find_debian_mirror(release: str | None = None, root: Path = Path("/")) -> str:
    """The Debian mirror apt uses on this machine; HostError if apt names none."""
    mirror = pick_debian_mirror(read_apt_sources(root), release)
    if mirror is None:
        raise HostError(f"no Debian mirror found in {root / 'etc/apt'} sources: set "
                        "`images.mirror` in the config or pass --mirror URL")
    return mirror
