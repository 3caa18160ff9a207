"""The front door's tables in a scratch state database: users, sessions, tokens, routes, bans."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.errors import Conflict, NotFound
from homecloud.frontdoor.bans import BanPolicy
from homecloud.frontdoor.credentials import StoredAccounts
from homecloud.frontdoor.passwords import digest, hash_password, new_secret
from homecloud.frontdoor.records import FrontdoorRecords
from homecloud.frontdoor.routing import Route
from homecloud.state.store import Store

pytest.importorskip("argon2", reason="argon2-cffi is not installed")


@pytest.fixture
def records(tmp_path: Path) -> FrontdoorRecords:
    return FrontdoorRecords(Store(tmp_path / "state.db"))


def test_users_groups_and_removal(records: FrontdoorRecords) -> None:
    records.add_user("alice", "h", {"family", "admin"}, 1.0)
    with pytest.raises(Conflict, match="user 'alice' exists"):
        records.add_user("alice", "h2", set(), 2.0)
    assert records.password_hash("alice") == "h"
    [alice] = records.users(10.0)
    assert (alice.groups, alice.admin, alice.tokens, alice.banned_until) == (
        ["family"], True, 0, None)
    records.add_token(digest("t"), "alice", 3.0)
    records.add_session(digest("s"), "alice", 100.0, 3.0)
    records.remove_user("alice")
    assert records.users(10.0) == [] and records.token_user(digest("t")) is None
    assert records.session_user(digest("s"), 10.0) is None
    with pytest.raises(NotFound, match="no user 'alice'"):
        records.remove_user("alice")


def test_sessions_expire_and_end_with_a_new_password(records: FrontdoorRecords) -> None:
    records.add_user("bob", "h", set(), 1.0)
    records.add_session(digest("s"), "bob", 100.0, 1.0)
    assert records.session_user(digest("s"), 99.0) == "bob"
    assert records.session_user(digest("s"), 100.0) is None
    records.set_password("bob", "h2")
    assert records.session_user(digest("s"), 50.0) is None


def test_failures_ban_after_the_policy(records: FrontdoorRecords) -> None:
    policy = BanPolicy(failures=3, window=10, ban=60)
    keys = ["address:a", "user:bob"]
    assert records.fail(keys, policy, 1.0) == []
    assert records.fail(keys, policy, 2.0) == []
    assert records.fail(keys, policy, 3.0) == [("address:a", 63.0), ("user:bob", 63.0)]
    assert records.banned(["address:a"], 4.0) == 63.0
    assert records.banned(["address:a"], 63.0) is None
    # Old failures fall out of the window.
    assert records.fail(["address:b"], policy, 100.0) == []
    assert records.fail(["address:b"], policy, 105.0) == []
    assert records.fail(["address:b"], policy, 111.0) == []


def test_route_clash_is_refused(records: FrontdoorRecords) -> None:
    records.add_route(Route("", "/app", "web", 80))
    with pytest.raises(Conflict, match="route /app exists \\(to web\\)"):
        records.add_route(Route("", "/app", "other", 81))
    assert [r.instance for r in records.routes()] == ["web"]
    records.remove_route("", "/app", "/app")
    with pytest.raises(NotFound):
        records.remove_route("", "/app", "/app")


def test_stored_accounts_verify_with_argon2id(records: FrontdoorRecords) -> None:
    stored = hash_password("a long password")
    assert stored.startswith("$argon2id$")
    records.add_user("carol", stored, set(), 1.0)
    accounts = StoredAccounts(records, BanPolicy())
    assert accounts.check_password("carol", "a long password")
    assert accounts.check_password("carol", "a long password")  # remembered
    assert not accounts.check_password("carol", "wrong")
    assert not accounts.check_password("nobody", "a long password")
    records.set_password("carol", hash_password("another password"))
    assert not accounts.check_password("carol", "a long password")  # the cache follows


def test_tokens_never_read_as_command_line_options() -> None:
    # `hc --token TOKEN`: a token starting with '-' would be taken for an option.
    secrets = {new_secret() for _ in range(2000)}
    assert len(secrets) == 2000
    assert all(s.startswith("hc_") and len(s) > 40 for s in secrets)
