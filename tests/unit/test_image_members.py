"""The tar member safety rules (homecloud.images.members), as pure functions."""

from __future__ import annotations

import pytest

from homecloud.errors import UserError
from homecloud.images.members import (
    Admission,
    ExtractionGuard,
    Kind,
    UnsafeMember,
    member_parts,
)


@pytest.mark.parametrize("name, parts", [
    ("usr/bin/env", ("usr", "bin", "env")),
    ("./usr/bin/", ("usr", "bin")),
    ("usr//lib/./x", ("usr", "lib", "x")),
    (".", ()),
    ("./", ()),
    ("..foo/bar..", ("..foo", "bar..")),  # dots inside names are fine
])
def test_member_parts(name: str, parts: tuple[str, ...]) -> None:
    assert member_parts(name) == parts


@pytest.mark.parametrize("name, reason", [
    ("/etc/passwd", "is absolute"),
    ("../evil", "contains '..'"),
    ("usr/../../evil", "contains '..'"),
    ("./a/..", "contains '..'"),
])
def test_member_parts_refuses(name: str, reason: str) -> None:
    with pytest.raises(UnsafeMember, match=reason) as caught:
        member_parts(name)
    assert caught.value.member == name
    assert isinstance(caught.value, UserError)
    assert repr(name) in caught.value.message


def test_admits_a_normal_tree_creating_missing_parents() -> None:
    guard = ExtractionGuard()
    assert guard.admit("./", Kind.DIRECTORY) == Admission((), (), False, True)
    assert guard.admit("usr/bin/env", Kind.OTHER) == Admission(
        ("usr", "bin", "env"), (("usr",), ("usr", "bin")), replace=False,
        exists_as_directory=False)
    assert guard.admit("usr/", Kind.DIRECTORY).exists_as_directory
    assert guard.admit("bin", Kind.SYMLINK).parts == ("bin",)
    assert guard.kind(("bin",)) is Kind.SYMLINK


def test_refuses_writing_through_a_symlink() -> None:
    guard = ExtractionGuard()
    guard.admit("etc", Kind.SYMLINK)  # e.g. etc -> /etc
    with pytest.raises(UnsafeMember, match="its parent 'etc' is a symlink"):
        guard.admit("etc/passwd", Kind.OTHER)
    with pytest.raises(UnsafeMember, match="is a symlink"):
        guard.admit("etc/cron.d/x", Kind.DIRECTORY)


def test_refuses_writing_through_a_hardlink_to_a_symlink() -> None:
    guard = ExtractionGuard()
    guard.admit("link", Kind.SYMLINK)
    guard.admit("alias", Kind.OTHER, hardlink_to="link")  # a second name of the symlink
    assert guard.kind(("alias",)) is Kind.SYMLINK
    with pytest.raises(UnsafeMember, match="its parent 'alias' is a symlink"):
        guard.admit("alias/x", Kind.OTHER)


def test_symlink_replaced_by_a_directory_is_then_safe() -> None:
    guard = ExtractionGuard()
    guard.admit("lib", Kind.SYMLINK)
    assert guard.admit("lib", Kind.DIRECTORY).replace
    assert guard.admit("lib/x", Kind.OTHER).parts == ("lib", "x")


def test_files_are_replaced_but_directories_are_not() -> None:
    guard = ExtractionGuard()
    guard.admit("a", Kind.OTHER)
    assert guard.admit("a", Kind.SYMLINK).replace
    guard.admit("d/", Kind.DIRECTORY)
    with pytest.raises(UnsafeMember, match="replace a directory"):
        guard.admit("d", Kind.SYMLINK)
    with pytest.raises(UnsafeMember, match="replace the image's root"):
        guard.admit(".", Kind.SYMLINK)


def test_parent_that_is_a_file() -> None:
    guard = ExtractionGuard()
    guard.admit("f", Kind.OTHER)
    with pytest.raises(UnsafeMember, match="its parent 'f' is not a directory"):
        guard.admit("f/x", Kind.OTHER)


@pytest.mark.parametrize("target, reason", [
    ("/etc/passwd", "hardlink target is absolute"),
    ("../outside", "hardlink target contains '..'"),
    ("never-extracted", "is not a member extracted before it"),
    ("sym/passwd", "hardlink target's parent 'sym' is a symlink"),
    ("dir", "is a directory"),
    ("self", "hardlink to itself"),
])
def test_hardlink_targets(target: str, reason: str) -> None:
    guard = ExtractionGuard()
    guard.admit("sym", Kind.SYMLINK)
    guard.admit("dir/", Kind.DIRECTORY)
    guard.admit("self", Kind.OTHER)
    with pytest.raises(UnsafeMember, match=reason):
        guard.admit("self" if target == "self" else "new", Kind.OTHER, hardlink_to=target)
    assert guard.kind(("new",)) is None  # a refused member is not recorded


def test_hardlink_to_an_earlier_file() -> None:
    guard = ExtractionGuard()
    guard.admit("usr/bin/perl5.36", Kind.OTHER)
    admission = guard.admit("./usr/bin/perl", Kind.OTHER, hardlink_to="./usr/bin/perl5.36")
    assert admission.parts == ("usr", "bin", "perl") and not admission.replace
