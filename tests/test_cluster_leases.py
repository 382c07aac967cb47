"""Account leases, stored logins and signed forwarding, on both store backends: the rules that
keep one account on one node at a time (no real nodes needed; tests/test_cluster_e2e.py runs
them through real ones)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from codexpool import users
from codexpool.cluster import forward, leases, logins
from codexpool.security import KeyCipher
from codexpool.store import Store

CIPHER = KeyCipher("k" * 40)
LOGIN = b'{"tokens": {"access_token": "a", "refresh_token": "rt_1"}}'


async def _linked_user(store: Store, name: str) -> int:
    user = await users.create_user(store, name, None)
    await logins.save(store, CIPHER, user.id, LOGIN, "cli")
    return user.id


async def test_one_owner_until_expiry_plus_margin(store: Store) -> None:
    uid = await _linked_user(store, "alice")
    now = time.time()
    assert await leases.acquire(store, uid, "a", now, now + 10, now - 5)
    # Another node cannot take a live lease, nor one expired for less than the margin.
    assert not await leases.acquire(store, uid, "b", now, now + 10, now - 5)
    later = now + 12  # expired 2 s ago; the margin is 5 s
    assert not await leases.acquire(store, uid, "b", later, later + 10, later - 5)
    # The owner renews (heartbeat), which pushes the expiry out again.
    await leases.heartbeat(store, "a", "http://a", now, later, later + 10)
    much_later = later + 14  # 4 s past the renewed expiry: still within the margin
    assert not await leases.acquire(store, uid, "b", much_later, much_later + 10, much_later - 5)
    gone = later + 16  # 6 s past it: the margin passed
    assert await leases.acquire(store, uid, "b", gone, gone + 10, gone - 5)
    assert [(r.user_id, r.node_id) for r in await leases.leases(store)] == [(uid, "b")]
    # The old owner's write-back is refused now; the new owner's lands.
    assert not await logins.save_if_owner(store, CIPHER, uid, b'{"v": 2}', "a")
    assert await logins.save_if_owner(store, CIPHER, uid, b'{"v": 3}', "b")
    stored = await logins.load(store, CIPHER, uid)
    assert stored is not None and stored.data == b'{"v": 3}'


async def test_release_frees_at_once_and_unlinked_accounts_are_not_taken(store: Store) -> None:
    uid = await _linked_user(store, "bobby")
    now = time.time()
    assert await leases.acquire(store, uid, "a", now, now + 10, now - 5)
    assert await leases.release(store, uid, "a")
    assert await leases.acquire(store, uid, "b", now, now + 10, now - 5)  # no wait
    assert not await leases.release(store, uid, "a")  # not a's to give any more
    other = (await users.create_user(store, "carol", None)).id  # never linked
    assert not await leases.acquire(store, other, "a", now, now + 10, now - 5)
    assert await logins.delete(store, uid)
    assert not await leases.acquire(store, uid, "a", now + 60, now + 70, now + 55)


async def test_a_deleted_user_takes_login_and_lease_along(store: Store) -> None:
    uid = await _linked_user(store, "dave")
    now = time.time()
    assert await leases.acquire(store, uid, "a", now, now + 10, now - 5)
    assert await users.delete_user(store, uid)
    assert await logins.digests(store) == {}
    assert await leases.leases(store) == []


async def test_logins_are_stored_encrypted(store: Store) -> None:
    uid = await _linked_user(store, "erin")
    row = await store.fetchone("SELECT ciphertext, digest FROM account_logins")
    assert row is not None and b"rt_1" not in str(row["ciphertext"]).encode()
    assert row["digest"] == logins.digest_of(LOGIN)
    assert await logins.digests(store) == {uid: logins.digest_of(LOGIN)}


def test_signature_covers_time_method_path_and_body() -> None:
    mac = forward.sign("s" * 32, "1.0", "POST", "/a?b=1", b"{}")
    assert mac == forward.sign("s" * 32, "1.0", "post", "/a?b=1", b"{}")
    for changed in (
        forward.sign("t" * 32, "1.0", "POST", "/a?b=1", b"{}"),
        forward.sign("s" * 32, "2.0", "POST", "/a?b=1", b"{}"),
        forward.sign("s" * 32, "1.0", "GET", "/a?b=1", b"{}"),
        forward.sign("s" * 32, "1.0", "POST", "/a?b=2", b"{}"),
        forward.sign("s" * 32, "1.0", "POST", "/a?b=1", b"{ }"),
    ):
        assert changed != mac


@pytest.fixture
def settings(make_settings: Any) -> Any:
    """A single cluster node (no codex needed: nothing runs)."""
    return make_settings(clusterSecret="c" * 40, nodeId="solo", clusterLeaseSeconds=5)


async def test_forwarded_requests_need_a_valid_signature(api: Any) -> None:
    from codexpool.app_keys import CIPHER as CIPHER_KEY
    from codexpool.app_keys import CLUSTER, STORE

    app = api.server.app
    master = await users.rotate_key(app[STORE], app[CIPHER_KEY], kind="master", prefix="sk-master-")
    path = "/api/openai/v1/chat/completions"
    body = b'{"model": "codex", "messages": [{"role": "user", "content": "hi"}]}'
    auth = {"Authorization": f"Bearer {master}", "Content-Type": "application/json"}
    now = f"{time.time():.3f}"
    good = forward.sign("c" * 40, now, "POST", path, body)
    stale = f"{time.time() - 60:.3f}"
    for signature in (
        f"{now}:{'0' * 64}",  # forged
        f"{stale}:{forward.sign('c' * 40, stale, 'POST', path, body)}",  # replayed later
        f"{now}:{forward.sign('x' * 40, now, 'POST', path, body)}",  # another secret
        "garbage",
    ):
        headers = {**auth, forward.NODE_HEADER: "other", forward.SIGNATURE_HEADER: signature}
        resp = await api.post(path, data=body, headers=headers)
        assert resp.status == 401, await resp.text()
        assert (await resp.json())["error"]["code"] == "invalid_cluster_signature"
    # A valid signature is served here, never forwarded again: no linked account -> 503.
    headers = {**auth, forward.NODE_HEADER: "other", forward.SIGNATURE_HEADER: f"{now}:{good}"}
    resp = await api.post(path, data=body, headers=headers)
    assert (resp.status, (await resp.json())["error"]["code"]) == (503, "no_linked_accounts")
    # The node registered itself; health names it for the operator.
    assert app[CLUSTER].describe()["nodes"][0]["id"] == "solo"
