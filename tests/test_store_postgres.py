"""What only the PostgreSQL store has: placeholder translation, migrations under an advisory
lock when nodes start together, refusal of a newer schema, and an outage of the database
server (stopped mid-test) answered with 503 `database_unavailable`, then recovered from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from codexpool import users
from codexpool.config import Settings
from codexpool.store import SCHEMA_VERSION, StoreError, postgres_store
from codexpool.usage import UsageRecorder, UsageRow

from .users_helpers import assert_openai_error, call, new_portal_user, rotate_user_key

asyncpg = pytest.importorskip("asyncpg")

from codexpool.store.postgres import to_postgres  # noqa: E402  (needs asyncpg)


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        ("SELECT 1 FROM t WHERE a = ? AND b = ?", "SELECT 1 FROM t WHERE a = $1 AND b = $2"),
        ("WHERE c < ?1 AND d > ?2 AND e >= ?1", "WHERE c < $1 AND d > $2 AND e >= $1"),
        ("SELECT '?', 'it''s ?' FROM t WHERE a = ?", "SELECT '?', 'it''s ?' FROM t WHERE a = $1"),
        ("WHERE kind = ? AND user_id IS ?", "WHERE kind = $1 AND user_id IS NOT DISTINCT FROM $2"),
        ("WHERE user_id is not ?", "WHERE user_id IS DISTINCT FROM $1"),
        ("WHERE this = ?", "WHERE this = $1"),
        ("WHERE a IS NULL", "WHERE a IS NULL"),
    ],
)
def test_placeholders_are_translated(sqlite: str, postgres: str) -> None:
    assert to_postgres(sqlite) == postgres


async def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    """Three nodes open one fresh database at the same moment: each migration runs once (under
    pg_advisory_lock); without the lock two of them create the same tables and fail."""
    stores = [postgres_store(pg_url) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        for store in stores:
            assert await store.schema_version() == SCHEMA_VERSION
        user = await users.create_user(stores[0], "ada", None)
        assert (await users.get_user_by_id(stores[2], user.id)).username == "ada"
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    store = postgres_store(pg_url)
    await store.open()
    await store.execute("UPDATE codexpool_schema SET version = ?", (SCHEMA_VERSION + 1,))
    await store.close()
    with pytest.raises(StoreError, match="newer than this codexpool"):
        await postgres_store(pg_url).open()


async def test_an_unreachable_server_is_a_store_error_at_start(pg_cluster: Any) -> None:
    dead = pg_cluster.url("no_such_database_here")
    with pytest.raises(StoreError, match="cannot open database"):
        await postgres_store(dead).open()


async def test_concurrent_read_then_write_transactions_do_not_interleave(pg_url: str) -> None:
    """Write transactions run one at a time across nodes, as SQLite's BEGIN IMMEDIATE makes
    them: two nodes each read a counter and write it back plus one; no increment is lost."""
    a, b = postgres_store(pg_url), postgres_store(pg_url)
    await a.open()
    await b.open()
    try:
        await a.execute(
            "INSERT INTO users (username, created_at, session_epoch) VALUES ('c', 0, 0)"
        )

        async def bump(store: Any) -> None:
            async with store.transaction() as db:
                row = await db.fetchone("SELECT session_epoch FROM users WHERE username = 'c'")
                await asyncio.sleep(0.01)  # the other node's transaction would slip in here
                await db.execute(
                    "UPDATE users SET session_epoch = ? WHERE username = 'c'", (row[0] + 1,)
                )

        await asyncio.gather(*(bump(s) for _ in range(10) for s in (a, b)))
        row = await a.fetchone("SELECT session_epoch FROM users WHERE username = 'c'")
        assert row["session_epoch"] == 20
    finally:
        await a.close()
        await b.close()


@pytest.fixture
def private_cluster() -> Iterator[Any]:
    """A cluster of this test's own: it gets stopped and started again mid-test."""
    from codexpool.testing.pg_cluster import PgCluster, PgUnavailable

    try:
        cluster = PgCluster()
    except PgUnavailable as exc:
        pytest.skip(str(exc))
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


async def eventually(check: Callable[[], Any], within: float = 20.0) -> Any:
    """Await check() until it returns a truthy value; return it, or fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def test_a_database_outage_is_a_503_and_recovers_by_itself(
    aiohttp_client: Any, make_settings: Callable[..., Settings], private_cluster: Any
) -> None:
    from codexpool.app import create_app
    from codexpool.app_keys import STORE

    settings = make_settings(databaseUrl=private_cluster.create_database())
    client = await aiohttp_client(create_app(settings), cookie_jar=aiohttp.DummyCookieJar())
    cookie = await new_portal_user(client, "alice")
    key = await rotate_user_key(client, cookie)
    usage = await call(client, "GET", "/api/openai/usage", cookie)
    assert usage.status == 200, await usage.text()
    assert (await client.get("/api/health")).status == 200
    recorder = UsageRecorder(client.app[STORE])
    await recorder.start()

    await asyncio.to_thread(private_cluster.stop)
    await assert_openai_error(
        await call(client, "GET", "/api/openai/usage", cookie), 503, "database_unavailable"
    )
    await assert_openai_error(
        await call(client, "POST", "/api/openai/keys/rotate", cookie, json={}),
        503,
        "database_unavailable",
    )
    health = await client.get("/api/health")
    assert health.status == 503 and (await health.json())["ready"] is False
    # A usage row recorded during the outage waits and lands once the database is back.
    recorder.record(
        UsageRow(time.time(), "chat.completions", None, "user", None, "m", False, status=200)
    )

    await asyncio.to_thread(private_cluster.start)

    async def usage_answers() -> bool:
        return (await call(client, "GET", "/api/openai/usage", cookie)).status == 200

    assert await eventually(usage_answers), "the store did not reconnect"
    assert await users.lookup_key(client.app[STORE], key) is not None
    assert await rotate_user_key(client, cookie) != key  # writes work again
    await asyncio.wait_for(recorder.close(), 30)
    row = await client.app[STORE].fetchone("SELECT COUNT(*) FROM requests")
    assert row[0] == 1


@pytest.mark.e2e
def test_the_real_server_serves_on_postgresql(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Any,
    pg_url: str,
    request: pytest.FixtureRequest,
) -> None:
    """The real `codexpool serve`, the CLI that links and keys a user, the real codex binary
    and the official SDK, with every row in PostgreSQL instead of the SQLite file."""
    import openai

    from codexpool.testing.fake_backend import codex_overrides

    from .e2e_helpers import link_user

    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url), databaseUrl=pg_url
    )
    key = link_user(server, tmp_path, "pgalice", "acct_pgalice")
    server.start()
    fake_backend.script("acct_pgalice", fake_backend.reply("Stored in PostgreSQL"))
    client = openai.OpenAI(base_url=server.api, api_key=key, max_retries=0)
    request.addfinalizer(client.close)
    answer = client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "Where?"}]
    )
    assert answer.choices[0].message.content == "Stored in PostgreSQL"
    assert not server.settings.db_path.exists()  # nothing went to a SQLite file

    async def usage_rows() -> list[Any]:
        store = postgres_store(pg_url)
        await store.open()
        try:
            return await store.fetchall(
                "SELECT r.status, u.username FROM requests r "
                "JOIN users u ON u.id = r.account_user_id"
            )
        finally:
            await store.close()

    async def settled() -> list[Any]:
        deadline = time.monotonic() + 20
        rows = await usage_rows()
        while not rows and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            rows = await usage_rows()
        return rows

    rows = asyncio.run(settled())
    assert [(r["status"], r["username"]) for r in rows] == [(200, "pgalice")]


async def test_a_key_rotated_on_another_node_is_refused_here_at_once(
    aiohttp_client: Any, make_settings: Callable[..., Settings], pg_url: str
) -> None:
    """Two nodes on one database: node A has the key in its lookup cache (valid up to 5 s);
    node B rotates it; A refuses the old key at once, because B's NOTIFY reached A's store."""
    from codexpool.app import create_app
    from codexpool.app_keys import STORE

    from .users_helpers import models_status

    node_a = await aiohttp_client(create_app(make_settings(databaseUrl=pg_url)))
    node_b = await aiohttp_client(create_app(make_settings(databaseUrl=pg_url)))
    for node in (node_a, node_b):  # each listens for the other's changes
        assert await eventually(lambda n=node: _listening(n.app[STORE]), within=10)
    cookie = await new_portal_user(node_b, "bea")
    old = await rotate_user_key(node_b, cookie)
    assert await models_status(node_a, old) == 200  # now cached on A
    new = await rotate_user_key(node_b, cookie)
    started = time.monotonic()

    async def refused() -> bool:
        return await models_status(node_a, old) == 401

    assert await eventually(refused, within=3)
    assert time.monotonic() - started < 2.0  # not the cache's 5 s backstop
    assert await models_status(node_a, new) == 200


async def _listening(store: Any) -> bool:
    return getattr(store, "_listener", None) is not None
