"""The store: migrations, WAL, refusal of newer schemas; accounts and usage on a real file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from codexpool import accounts
from codexpool.security import KeyCipher
from codexpool.store import MARKER_RECHECK_S, SCHEMA_VERSION, Store, StoreError
from codexpool.usage import UsageRecorder, UsageRow, prune


async def open_store(path: Path) -> Store:
    store = Store(path)
    await store.open()
    return store


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


async def test_key_rotation_revokes_and_reveals(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite3")
    cipher = KeyCipher("c" * 40)
    try:
        user = await accounts.create_user(store, "alice", None)
        first = await accounts.rotate_key(
            store, cipher, kind="user", prefix="sk-u-", user_id=user.id
        )
        assert (await accounts.lookup_key(store, first)).user_id == user.id
        second = await accounts.rotate_key(
            store, cipher, kind="user", prefix="sk-u-", user_id=user.id, label="laptop"
        )
        assert await accounts.lookup_key(store, first) is None
        assert (await accounts.lookup_key(store, second)).username == "alice"
        assert await accounts.reveal_key(store, cipher, user.id) == second
        master = await accounts.rotate_key(store, cipher, kind="master", prefix="sk-m-")
        principal = await accounts.lookup_key(store, master)
        assert principal.kind == "master" and principal.user_id is None
        new_master = await accounts.rotate_key(store, cipher, kind="master", prefix="sk-m-")
        assert await accounts.lookup_key(store, master) is None
        assert await accounts.lookup_key(store, new_master) is not None
        # Nothing stores the plain key.
        raw = (tmp_path / "db.sqlite3").read_bytes()
        assert second.encode() not in raw and new_master.encode() not in raw
        # Deleting the user kills their key.
        assert await accounts.delete_user(store, user.id)
        assert await accounts.lookup_key(store, second) is None
    finally:
        await store.close()


async def test_duplicate_username_is_409(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite3")
    try:
        await accounts.create_user(store, "bob", None)
        with pytest.raises(accounts.ApiError) as info:
            await accounts.create_user(store, "bob", None)
        assert info.value.status == 409
    finally:
        await store.close()


async def test_usage_rows_are_written_on_close(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite3")
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
        await store.close()


async def test_change_stamp_sees_another_stores_writes(tmp_path: Path) -> None:
    """The key cache's validity stamp: this store's writes change it at once, another
    process's (here a second Store on the same file, as the CLI would be) once the marker is
    looked at again, at most MARKER_RECHECK_S later."""
    ours = await open_store(tmp_path / "db.sqlite3")
    theirs = await open_store(tmp_path / "db.sqlite3")
    try:
        before = ours.change_stamp()
        await ours.execute("INSERT INTO users (username, created_at) VALUES ('a', 0)")
        mine = ours.change_stamp()
        assert mine != before
        await theirs.execute("INSERT INTO users (username, created_at) VALUES ('b', 0)")
        await asyncio.sleep(MARKER_RECHECK_S * 2)
        assert ours.change_stamp() != mine
    finally:
        await ours.close()
        await theirs.close()
