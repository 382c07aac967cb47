"""The store: migrations, WAL, refusal of newer schemas; accounts and usage on a real SQLite
file and on a real PostgreSQL database (the `store` fixture runs each test on both)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from codexpool import usage_report, users
from codexpool.key_limits import KeyQuotas
from codexpool.security import KeyCipher, key_digest
from codexpool.store import (
    MARKER_RECHECK_S,
    SCHEMA_VERSION,
    SqliteStore,
    Store,
    StoreError,
    migration_sql,
    postgres_store,
)
from codexpool.usage import UsageRecorder, UsageRow, prune


async def open_store(path: Path) -> Store:
    store = SqliteStore(path)
    await store.open()
    return store


async def open_twin(store: Store) -> Store:
    """Open a second store on the same database, as another process or node would."""
    twin = SqliteStore(store.path) if isinstance(store, SqliteStore) else postgres_store(store.url)
    await twin.open()
    return twin


async def test_migrates_and_uses_wal(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite3")
    try:
        row = await store.fetchone("PRAGMA user_version")
        assert row[0] == SCHEMA_VERSION
        row = await store.fetchone("PRAGMA journal_mode")
        assert row[0] == "wal"
        assert await store.ping()
    finally:
        await store.close()
    # Reopening is a no-op migration.
    store = await open_store(tmp_path / "db.sqlite3")
    await store.close()


async def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    con.close()
    with pytest.raises(StoreError, match="newer than this codexpool"):
        await open_store(path)


async def test_key_rotation_revokes_and_reveals(store: Store) -> None:
    cipher = KeyCipher("c" * 40)
    user = await users.create_user(store, "alice", None)
    first = await users.rotate_key(store, cipher, kind="user", prefix="sk-u-", user_id=user.id)
    assert (await users.lookup_key(store, first)).user_id == user.id
    second = await users.rotate_key(
        store, cipher, kind="user", prefix="sk-u-", user_id=user.id, label="laptop"
    )
    assert await users.lookup_key(store, first) is None
    assert (await users.lookup_key(store, second)).username == "alice"
    assert await users.reveal_key(store, cipher, user.id) == second
    master = await users.rotate_key(store, cipher, kind="master", prefix="sk-m-")
    principal = await users.lookup_key(store, master)
    assert principal.kind == "master" and principal.user_id is None
    new_master = await users.rotate_key(store, cipher, kind="master", prefix="sk-m-")
    assert await users.lookup_key(store, master) is None
    assert await users.lookup_key(store, new_master) is not None
    # Nothing stores the plain key.
    stored = " ".join(str(v) for row in await store.fetchall("SELECT * FROM api_keys") for v in row)
    assert second not in stored and new_master not in stored
    if isinstance(store, SqliteStore):
        raw = store.path.read_bytes()
        assert second.encode() not in raw and new_master.encode() not in raw
    # Deleting the user kills their key.
    assert await users.delete_user(store, user.id)
    assert await users.lookup_key(store, second) is None


async def test_duplicate_username_is_409(store: Store) -> None:
    await users.create_user(store, "bob", None)
    with pytest.raises(users.ApiError) as info:
        await users.create_user(store, "bob", None)
    assert info.value.status == 409


async def test_usage_rows_are_written_on_close(store: Store) -> None:
    recorder = UsageRecorder(store)
    await recorder.start()
    try:
        for i in range(1200):
            recorder.record(
                UsageRow(
                    ts=1000.0 + i,
                    endpoint="chat.completions",
                    key_id=None,
                    key_kind="user",
                    account_user_id=1,
                    model="m",
                    stream=True,
                    status=200,
                    input_tokens=3,
                    output_tokens=4,
                )
            )
        await recorder.close()
        row = await store.fetchone("SELECT COUNT(*), SUM(output_tokens), SUM(stream) FROM requests")
        assert tuple(row) == (1200, 4800, 1200)
        assert recorder.written == 1200
        assert await prune(store, 1) == 1200  # all rows are from 1970
    finally:
        await recorder.close()


async def test_change_stamp_sees_another_stores_writes(store: Store) -> None:
    """The key cache's validity stamp: this store's writes change it at once, another
    process's (here a second Store on the same database, as the CLI or another node would be)
    soon after: on SQLite once the marker is looked at again, at most MARKER_RECHECK_S later;
    on PostgreSQL when its NOTIFY arrives."""
    theirs = await open_twin(store)
    try:
        before = store.change_stamp()
        await store.execute("INSERT INTO users (username, created_at) VALUES ('a', 0)")
        mine = store.change_stamp()
        assert mine != before
        await _wait_listening(store)
        await _wait_listening(theirs)
        mine = store.change_stamp()
        await theirs.execute("INSERT INTO users (username, created_at) VALUES ('b', 0)")
        assert await eventually(lambda: store.change_stamp() != mine)
        # Bookkeeping writes (usage rows) leave cached lookups valid.
        await asyncio.sleep(MARKER_RECHECK_S * 2)
        quiet = store.change_stamp()
        await theirs.execute(
            "INSERT INTO requests (ts, endpoint, status) VALUES (1, 'x', 200)", bookkeeping=True
        )
        await asyncio.sleep(MARKER_RECHECK_S * 4)
        assert store.change_stamp() == quiet
    finally:
        await theirs.close()


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> bool:
    """Return True as soon as the predicate holds, False if it never did within the time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(MARKER_RECHECK_S / 2)
    return predicate()


async def _wait_listening(store: Store) -> None:
    """Wait until a PostgreSQL store's change listener is connected (SQLite needs none)."""
    assert await eventually(lambda: getattr(store, "_listener", True) is not None)


async def _add_request(store: Store, key_id: int | None, account: int | None) -> None:
    await store.execute(
        "INSERT INTO requests (ts, endpoint, key_id, key_kind, account_user_id, status) "
        "VALUES (?, 'chat.completions', ?, 'user', ?, 200)",
        (time.time(), key_id, account),
    )


async def test_ids_are_never_reused(store: Store) -> None:
    """Issue 14 item 6: SQLite handed a deleted user's id (and key id) to the next insert, so a
    new registrant inherited the deleted user's usage history and today's quota count."""
    cipher = KeyCipher("c" * 40)
    await users.create_user(store, "alice", None)
    bob = await users.create_user(store, "bob", None)
    await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=bob.id)
    bob_key = await users.live_key_row(store, user_id=bob.id, kind="user")
    assert bob_key is not None
    await _add_request(store, bob_key["id"], bob.id)
    assert await users.delete_user(store, bob.id)
    carol = await users.create_user(store, "carol", None)
    await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=carol.id)
    carol_key = await users.live_key_row(store, user_id=carol.id, kind="user")
    assert carol_key is not None
    assert carol.id > bob.id and carol_key["id"] > bob_key["id"]
    assert (await KeyQuotas(store).usage_of(("user", carol.id))).requests == 0
    mine = await usage_report.user_usage(store, carol.id, 7)
    assert mine["byKey"] == [] and mine["servedByAccount"] == []
    # Bob's rows stay his: the report names the tombstone.
    report = await usage_report.admin_usage(store, 7)
    assert [(r["userId"], r["username"]) for r in report["byAccount"]] == [
        (bob.id, "bob (deleted)")
    ]


def _old_schema_database(path: Path, cipher: KeyCipher) -> None:
    """Write a database as codexpool with schema version 2 left it: ids 3 (a user) and 5 (a
    key) were deleted, but the request log still names them."""
    con = sqlite3.connect(path)
    con.executescript(
        migration_sql(1, "sqlite") + migration_sql(2, "sqlite") + "PRAGMA user_version = 2;"
    )
    con.executemany(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, NULL, ?)",
        [(1, "alice", 1.0), (2, "bob", 2.0)],
    )
    keys = [
        (1, 1, "user", "sk-alice", 7),
        (2, None, "master", "sk-master", None),
        (4, 2, "user", "sk-bob", None),
    ]
    con.executemany(
        "INSERT INTO api_keys (id, user_id, kind, digest, ciphertext, hint, created_at, "
        "max_requests_per_day) VALUES (?, ?, ?, ?, ?, 'hint', 1.0, ?)",
        [(i, u, k, key_digest(plain), cipher.encrypt(plain), cap) for i, u, k, plain, cap in keys],
    )
    con.execute(
        "INSERT INTO limit_snapshots (user_id, primary_used, fetched_at, ok) VALUES (1, 5, 1, 1)"
    )
    con.execute(
        "INSERT INTO requests (ts, endpoint, key_id, key_kind, account_user_id, status) "
        "VALUES (?, 'chat.completions', 5, 'user', 3, 200)",
        (time.time(),),
    )
    con.commit()
    con.close()


async def test_an_old_database_migrates_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    cipher = KeyCipher("c" * 40)
    _old_schema_database(path, cipher)
    store = await open_store(path)
    try:
        assert (await store.fetchone("PRAGMA user_version"))[0] == SCHEMA_VERSION
        listed = await users.list_users(store)
        assert [(u.id, u.username) for u in listed] == [(1, "alice"), (2, "bob")]
        alice = await users.lookup_key(store, "sk-alice")
        assert alice is not None and (alice.key_id, alice.user_id) == (1, 1)
        assert alice.limits.requests_per_day == 7
        assert (await users.lookup_key(store, "sk-master")) is not None
        assert await users.reveal_key(store, cipher, 2) == "sk-bob"
        # Ids the request log still names are not handed out again.
        dan = await users.create_user(store, "dan", None)
        assert dan.id == 4
        await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=dan.id)
        row = await users.live_key_row(store, user_id=dan.id, kind="user")
        assert row is not None and row["id"] == 6
        # Foreign keys still cascade after the rebuild.
        assert await users.delete_user(store, 1)
        assert await store.fetchone("SELECT 1 FROM api_keys WHERE user_id = 1") is None
        assert await store.fetchone("SELECT 1 FROM limit_snapshots WHERE user_id = 1") is None
        erin = await users.create_user(store, "erin", None)
        assert erin.id == 5
    finally:
        await store.close()


async def test_a_transaction_cancelled_while_it_begins_leaves_none_open(tmp_path: Path) -> None:
    """A background writer cancelled at shutdown while its BEGIN waited in aiosqlite's thread
    left that transaction open, so every later write failed with "cannot start a transaction
    within a transaction" and the last usage rows went to the spool (seen in CI)."""
    store = await open_store(tmp_path / "db.sqlite3")

    async def write() -> None:
        async with store.transaction() as db:
            await db.execute("DELETE FROM audit WHERE 0")

    task = asyncio.create_task(write())
    await asyncio.sleep(0)  # the task holds the lock and waits for BEGIN IMMEDIATE
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await write()  # a new transaction begins
    assert not store.db.in_transaction
    await store.close()
