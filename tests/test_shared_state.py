"""Shared state without codex: two nodes are two Store objects on one real database (an SQLite
file, and a PostgreSQL database of a private cluster); each admits, claims and invalidates
through the database, so what one node does the other sees (docs/cluster-state.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from codexpool import users
from codexpool.account_limits import LimitCache
from codexpool.change_feed import ChangeFeed
from codexpool.codex.engine import Engine, EngineConfig
from codexpool.codex.events import TurnError
from codexpool.conversations import ThreadRef, prefix_digests
from codexpool.errors import ApiError
from codexpool.key_limits import SECONDS_PER_DAY, KeyLimits
from codexpool.login_throttle import SharedLoginThrottle
from codexpool.pool import Pool
from codexpool.security import KeyCipher
from codexpool.shared_conversations import SharedConversations
from codexpool.shared_quotas import SharedKeyQuotas
from codexpool.store import SqliteStore, Store, postgres_store
from codexpool.users import KeyPrincipal

from .test_key_limits import Clock
from .test_pool import seeded, snap

ALICE = ("user", 1)
MASTER = ("master", None)
NOON = 20_000 * SECONDS_PER_DAY + 43_200.0


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two nodes' stores on one database, the first with user alice."""
    if request.param == "sqlite":
        a, b = SqliteStore(tmp_path / "db.sqlite"), SqliteStore(tmp_path / "db.sqlite")
    else:
        url = request.getfixturevalue("pg_url")
        a, b = postgres_store(url), postgres_store(url)
    for s in (a, b):
        await s.open()
    await users.create_user(a, "alice", None)
    yield a, b
    for s in (a, b):
        await s.close()


async def code_of(quotas: SharedKeyQuotas, owner: tuple, limits: KeyLimits) -> str:
    with pytest.raises(ApiError) as info:
        await quotas.admit(owner, limits)
    return info.value.code


async def test_concurrency_and_day_caps_hold_across_nodes(stores: tuple[Store, Store]) -> None:
    clock = Clock(NOON)
    node_a = SharedKeyQuotas(stores[0], "a:1", 30, clock)
    node_b = SharedKeyQuotas(stores[1], "b:1", 30, clock)
    one_at_a_time = KeyLimits(requests_per_day=3, concurrent_requests=1)
    first = await node_a.admit(ALICE, one_at_a_time)
    assert await code_of(node_b, ALICE, one_at_a_time) == "key_concurrency_exceeded"
    assert (await node_b.usage_of(ALICE)).as_json() == {"requests": 1, "tokens": 0, "inFlight": 1}
    first.finish(40)
    await node_a.close()  # the release is written
    second = await node_b.admit(ALICE, one_at_a_time)
    second.finish(2)
    await node_b.close()
    (await node_a.admit(ALICE, one_at_a_time)).finish()
    await node_a.close()
    # The third request of the day was the last, on whichever node asks.
    for node in (node_a, node_b):
        assert await code_of(node, ALICE, one_at_a_time) == "key_requests_per_day_exceeded"
    assert (await node_a.usage_of(ALICE)).as_json() == {"requests": 3, "tokens": 42, "inFlight": 0}
    # Tokens count across nodes too; the master key is its own owner.
    tokens = KeyLimits(tokens_per_day=42)
    assert await code_of(node_b, ALICE, tokens) == "key_tokens_per_day_exceeded"
    (await node_b.admit(MASTER, tokens)).finish()
    # A new UTC day starts from zero everywhere.
    clock.now += SECONDS_PER_DAY
    (await node_b.admit(ALICE, one_at_a_time)).finish()
    await node_b.close()


async def test_many_admissions_at_once_never_pass_the_cap(stores: tuple[Store, Store]) -> None:
    """Forty requests race over two nodes for five slots: exactly five get in."""
    nodes = [SharedKeyQuotas(s, f"n{i}", 30) for i, s in enumerate(stores)]
    limits = KeyLimits(concurrent_requests=5)

    async def try_one(i: int) -> bool:
        try:
            await nodes[i % 2].admit(ALICE, limits)
        except ApiError as exc:
            assert exc.code == "key_concurrency_exceeded"
            return False
        return True

    results = await asyncio.gather(*(try_one(i) for i in range(40)))
    assert sum(results) == 5
    assert (await nodes[0].usage_of(ALICE)).in_flight == 5


async def test_a_dead_nodes_slots_expire_and_live_ones_are_renewed(
    stores: tuple[Store, Store],
) -> None:
    clock = Clock(NOON)
    dead = SharedKeyQuotas(stores[0], "dead:1", 30, clock)
    live = SharedKeyQuotas(stores[1], "live:1", 30, clock)
    cap = KeyLimits(concurrent_requests=2)
    await dead.admit(ALICE, cap)  # never finished, never renewed: the node died
    running = await live.admit(ALICE, cap)
    assert await code_of(live, ALICE, cap) == "key_concurrency_exceeded"
    clock.now += 20
    await live.renew()  # the live node renews its own slot only
    clock.now += 20  # past the dead node's expiry, inside the renewed one
    again = await live.admit(ALICE, cap)
    assert await code_of(live, ALICE, cap) == "key_concurrency_exceeded"
    await live.renew()  # deletes the expired row
    rows = await stores[1].fetchall("SELECT node_id FROM key_slots ORDER BY node_id")
    assert [r["node_id"] for r in rows] == ["live:1", "live:1"]
    running.finish()
    again.finish()
    await live.close()
    # A node restarting under the same id drops what its predecessor left.
    await dead.admit(ALICE, cap)
    await SharedKeyQuotas(stores[1], "dead:1", 30, clock).start()
    assert (await live.usage_of(ALICE)).in_flight == 0


async def test_the_day_count_starts_from_the_request_log(stores: tuple[Store, Store]) -> None:
    """Requests already logged today (before sharedState was on) count."""
    a = stores[0]
    cipher = KeyCipher("k" * 40)
    await users.rotate_key(a, cipher, kind="user", prefix="sk-", user_id=1)
    key = await a.fetchone("SELECT id FROM api_keys")
    for _ in range(2):
        await a.execute(
            "INSERT INTO requests (ts, endpoint, key_id, key_kind, status, input_tokens,"
            " output_tokens) VALUES (?, 'chat', ?, 'user', 200, 5, 5)",
            (NOON - 60, key["id"]),
        )
    node = SharedKeyQuotas(stores[1], "b", 30, Clock(NOON))
    assert (await node.usage_of(ALICE)).as_json() == {"requests": 2, "tokens": 20, "inFlight": 0}
    (await node.admit(ALICE, KeyLimits(requests_per_day=3))).finish()
    assert await code_of(node, ALICE, KeyLimits(requests_per_day=3)) == (
        "key_requests_per_day_exceeded"
    )


async def test_a_conversation_is_claimed_once_from_any_node(stores: tuple[Store, Store]) -> None:
    released: list[tuple[str, str]] = []

    async def release(account_key: str, thread_id: str) -> None:
        released.append((account_key, thread_id))

    nodes = []
    for i, s in enumerate(stores):
        conv = SharedConversations(release, idle_s=60, max_per_account=2)
        conv.attach(s, f"node{i}")
        nodes.append(conv)
    a, b = nodes
    items = tuple({"type": "message", "role": "user", "content": str(n)} for n in range(4))
    d = prefix_digests("key:1", None, [], items)
    await a.remember(d[2], ThreadRef(7, "7", "t-on-a"))
    assert await b.claim(d) == (2, ThreadRef(7, "7", "t-on-a"))
    assert await a.claim(d) is None  # taken: never two turns on one thread
    # The per-account bound evicts the oldest; only the node holding a thread releases it.
    await a.remember(d[1], ThreadRef(7, "7", "t1"))
    await b.remember(d[2], ThreadRef(7, "7", "t2"))
    await b.remember(d[3], ThreadRef(7, "7", "t3"))
    await asyncio.sleep(0)
    await a.close()
    await b.close()
    assert released == []  # t1 was evicted by node1's write, but it lives on node0
    assert await a.claim(d[:2]) is None
    # A remembered prefix far from the end (a regenerated answer from an older point) is
    # found too, past the last prefixes asked first.
    long = tuple({"type": "message", "role": "user", "content": str(n)} for n in range(30))
    dl = prefix_digests("key:9", None, [], long)
    await a.remember(dl[3], ThreadRef(8, "8", "t-early"))
    assert await b.claim(dl) == (3, ThreadRef(8, "8", "t-early"))
    # Responses answers continue from the other node, for the same scope only.
    await a.remember_response("resp_1", "key:1", items)
    assert await b.response("resp_1", "key:2") is None
    record = await b.response("resp_1", "key:1")
    assert record is not None and record.items == items


async def test_change_feed_carries_a_write_to_the_other_node(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    feed = ChangeFeed(b)
    heard: list[int] = []
    feed.add_listener(lambda: heard.append(1))

    async def moved() -> bool:
        for _ in range(100):  # the marker is looked at every 25 ms; a NOTIFY takes a moment
            if await feed.poll():
                return True
            await asyncio.sleep(0.02)
        return False

    async def settle() -> None:  # PostgreSQL: every look moves until its listener is up
        for _ in range(50):
            if not await moved():
                break
        heard.clear()

    await settle()
    await a.execute("UPDATE users SET disabled = 1 WHERE id = 1")
    assert await moved() and heard == [1]
    await asyncio.sleep(0.3)  # a notification still on its way is taken in here
    await feed.poll()
    await a.execute("UPDATE api_keys SET last_used_at = 1", bookkeeping=True)
    await asyncio.sleep(0.1)
    assert await feed.poll() is False  # bookkeeping: no cache depends on it
    heard.clear()
    await a.announce_change()
    assert await moved() and heard == [1]


async def test_limits_and_cooldowns_of_one_node_reach_the_other(
    make_settings: Any, tmp_path: Path
) -> None:
    """Node A's pushed limits (stored by its persister) and its cooldown reach node B's pool."""
    settings = make_settings(sharedState=True)
    store_a, (ann, bob) = await seeded(settings, tmp_path, ["ann", "bob"])
    store_b = SqliteStore(settings.db_path)
    await store_b.open()
    engine = Engine(EngineConfig(codex_bin="/nonexistent/codex"))  # never started here
    limits_a, limits_b = (LimitCache(s, engine, ttl_s=60) for s in (store_a, store_b))
    pool_a, pool_b = Pool(settings, store_a, limits_a), Pool(settings, store_b, limits_b)
    master = KeyPrincipal(99, "master", None, None)
    resets = int(time.time()) + 1800
    try:
        for uid in (ann, bob):
            limits_a.on_push(str(uid), snap(10, resets))
        await limits_a.flush()
        assert await limits_b.merge_stored() == 2
        assert limits_b.get(ann) is not None and not limits_b.due(ann)
        assert await limits_b.merge_stored() == 0  # nothing newer
        assert await pool_b.eligible_count() == 2
        pool_a.mark_failed(
            pool_a.account_for(ann, "ann"), TurnError("usage_limit", "x", resets_at=resets)
        )
        await pool_a.close()  # the cooldown is written
        await pool_b.reload()  # what the change feed does on node B
        cd = pool_b.cooldown_of(ann)
        assert cd is not None and cd.until == resets and cd.reason == "usage_limit"
        assert {(await pool_b.choose(master)).user_id for _ in range(3)} == {bob}
    finally:
        await limits_a.close()
        await store_b.close()
        await store_a.close()


async def test_sign_in_failures_count_across_nodes(stores: tuple[Store, Store]) -> None:
    """Five wrong passwords for one name from one address, spread over two nodes, lock that
    pair on both; a success on one node clears it on the other; registrations add up too."""
    clock = Clock(NOON)
    a, b = (SharedLoginThrottle(s, clock) for s in stores)
    for i in range(5):
        node = (a, b)[i % 2]
        await node.guard("portal", "alice", "10.0.0.1")
        await node.record_failure("portal", "alice", "10.0.0.1")
    for node in (a, b):
        with pytest.raises(ApiError) as info:
            await node.guard("portal", "alice", "10.0.0.1")
        assert info.value.code == "too_many_attempts"
        assert info.value.headers["Retry-After"] == "300"
    await b.guard("portal", "alice", "10.0.0.2")  # another address is not refused
    await a.record_success("portal", "alice", "10.0.0.1")
    await b.guard("portal", "alice", "10.0.0.1")
    clock.now += 301  # the windows pass
    await a.guard("portal", "bob", "10.0.0.1")
    for i in range(20):
        await (a, b)[i % 2].take_registration("10.0.0.9")
    with pytest.raises(ApiError) as info:
        await a.take_registration("10.0.0.9")
    assert info.value.code == "too_many_registrations"
    names = await stores[0].fetchall("SELECT DISTINCT bucket FROM login_failures")
    assert all("alice" not in r["bucket"] and "10.0" not in r["bucket"] for r in names)


async def test_a_slot_being_released_does_not_refuse_the_next_request(
    stores: tuple[Store, Store],
) -> None:
    """A client with one request at a time sends its next one the moment the last ended: the
    release (written after the answer) is waited for briefly instead of refusing."""
    node_a, node_b = (SharedKeyQuotas(s, f"n{i}", 30) for i, s in enumerate(stores))
    one = KeyLimits(concurrent_requests=1)
    for _ in range(5):
        (await node_a.admit(ALICE, one)).finish()  # released by a task, not yet written
        (await node_b.admit(ALICE, one)).finish()
    await node_a.close()
    await node_b.close()
    assert (await node_a.usage_of(ALICE)).in_flight == 0
