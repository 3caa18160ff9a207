"""Which tarball members are safe to extract: pure checks, no file system access.

Python 3.11.2 (Debian 12) has no tarfile extraction filters, so these rules are ours. Nothing may
ever be written outside the image:

- member names must be relative and must not contain a '..' component;
- no member may be written *through* a symlink the archive made earlier (``lib -> /usr/lib``
  followed by ``lib/x`` would write the host's /usr/lib), nor through a hardlink to one;
- hardlinks must point at a member extracted earlier, by a safe path.

Symlinks themselves are kept whatever they point at: absolute targets are normal in a root file
system and are never followed while extracting. The guard models the tree it has admitted (the
image starts empty and only the extractor writes to it), so it knows what each path is without
looking at the disk.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from homecloud.errors import UserError

Parts = tuple[str, ...]


class UnsafeMember(UserError):
    """A member that would write outside the image, or that cannot be extracted safely."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"unsafe member {member!r}: {reason}")
        self.member = member


class Kind(enum.Enum):
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "file"  # regular files, devices, fifos: anything that is not followed


def member_parts(name: str, *, what: str = "its path") -> Parts:
    """Split a member name into path components, refusing absolute names and '..'.

    ``./usr/bin`` and ``usr//bin/`` give ``("usr", "bin")``; ``.`` and ``./`` (the archive's root
    directory) give ``()``.
    """
    if name.startswith("/"):
        raise UnsafeMember(name, f"{what} is absolute")
    if "\0" in name:
        raise UnsafeMember(name, f"{what} contains a NUL character")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise UnsafeMember(name, f"{what} contains '..'")
    return parts


@dataclass(frozen=True)
class Admission:
    """What the extractor must do before writing an admitted member at ``parts``."""

    parts: Parts
    create_parents: tuple[Parts, ...]  # missing parent directories, outermost first
    replace: bool  # something that is not a directory is there already: unlink it first
    exists_as_directory: bool  # a directory member over an existing directory: keep it


class ExtractionGuard:
    """Admits members one by one, in archive order, keeping a model of what is on disk."""

    def __init__(self) -> None:
        self._kinds: dict[Parts, Kind] = {(): Kind.DIRECTORY}

    def kind(self, parts: Parts) -> Kind | None:
        return self._kinds.get(parts)

    def _check_parents(self, name: str, parts: Parts,
                       whose: str = "its parent") -> tuple[Parts, ...]:
        missing = []
        for depth in range(1, len(parts)):
            prefix = parts[:depth]
            kind = self._kinds.get(prefix)
            if kind is Kind.SYMLINK:
                raise UnsafeMember(name, f"{whose} {'/'.join(prefix)!r} is a symlink")
            if kind is Kind.OTHER:
                raise UnsafeMember(name, f"{whose} {'/'.join(prefix)!r} is not a directory")
            if kind is None:
                missing.append(prefix)
        return tuple(missing)

    def admit(self, name: str, kind: Kind, hardlink_to: str | None = None) -> Admission:
        """Check member ``name`` of ``kind`` (for hardlinks, pass their target name).

        Raises UnsafeMember; on success records the member and returns what to do.
        """
        parts = member_parts(name)
        if not parts:
            if kind is not Kind.DIRECTORY:
                raise UnsafeMember(name, "it would replace the image's root directory")
            return Admission(parts, (), replace=False, exists_as_directory=True)
        missing = self._check_parents(name, parts)
        if hardlink_to is not None:
            kind = self._hardlink_kind(name, hardlink_to)
        existing = self._kinds.get(parts)
        if existing is Kind.DIRECTORY and kind is not Kind.DIRECTORY:
            raise UnsafeMember(name, "it would replace a directory extracted earlier")
        for prefix in missing:
            self._kinds[prefix] = Kind.DIRECTORY
        self._kinds[parts] = kind
        return Admission(parts, missing,
                         replace=existing is not None and existing is not Kind.DIRECTORY,
                         exists_as_directory=existing is Kind.DIRECTORY)

    def _hardlink_kind(self, name: str, target: str) -> Kind:
        """What a hardlink to ``target`` makes: a second name for that inode, symlinks too."""
        target_parts = member_parts(target, what="its hardlink target")
        if not target_parts:
            raise UnsafeMember(name, "its hardlink target is the image's root directory")
        self._check_parents(name, target_parts, "its hardlink target's parent")
        if target_parts == member_parts(name):
            raise UnsafeMember(name, "it is a hardlink to itself")
        target_kind = self._kinds.get(target_parts)
        if target_kind is None:
            raise UnsafeMember(name, f"its hardlink target {target!r} is not a member "
                                     "extracted before it")
        if target_kind is Kind.DIRECTORY:
            raise UnsafeMember(name, f"its hardlink target {target!r} is a directory")
        return target_kind
