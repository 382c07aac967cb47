"""`codexpool migrate-store --to postgresql://...` and `codexpool check` on PostgreSQL, through
the real command line: a SQLite store populated through the domain code (users, a deleted user,
rotated and master keys with limits, usage rows, audit, limit snapshots, quota history) is
copied into an empty PostgreSQL database and compared table by table, row by row."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from codexpool import audit, users
from codexpool.account_limits import Limits
from codexpool.cluster import leases, logins
from codexpool.config import Settings
from codexpool.conversations import ThreadRef
from codexpool.key_limits import KeyLimits
from codexpool.login_throttle import SharedLoginThrottle
from codexpool.quota_history import QuotaHistory
from codexpool.security import KeyCipher
from codexpool.shared_conversations import SharedConversations
from codexpool.shared_quotas import SharedKeyQuotas
from codexpool.store import SqliteStore, Store, postgres_store
from codexpool.usage import UsageRecorder, UsageRow

from .conftest import REPO

pytest.importorskip("asyncpg")


async def _no_release(account_key: str, thread_id: str) -> None:
    return None


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "codexpool",
            "--settings",
            str(settings.data_path / "settings.json"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


async def populate(store: SqliteStore) -> dict[str, int]:
    """Fill every table through the code that writes it in production; return some ids."""
    cipher = KeyCipher("c" * 40)
    alice = await users.create_user(store, "alice", "$2b$04$hash")
    bob = await users.create_user(store, "bob", None)
    carol = await users.create_user(store, "carol", None)
    for user in (alice, bob, carol):
        await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=user.id)
    await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=alice.id)
    await users.rotate_key(store, cipher, kind="master", prefix="sk-m-", label="pool")
    await users.set_key_limits(
        store, ("user", bob.id), KeyLimits(requests_per_day=7, allowed_models=("gpt-5",))
    )
    await users.set_pool_opt_in(store, bob.id, False)
    alice_key = await users.live_key_row(store, user_id=alice.id, kind="user")
    assert alice_key is not None
    recorder = UsageRecorder(store)
    await recorder.start()
    now = time.time()
    for i in range(30):
        recorder.record(
            UsageRow(
                now - i * 60.5,
                "chat.completions",
                alice_key["id"] if i % 3 else None,
                "user" if i % 3 else "master",
                alice.id if i % 2 else bob.id,
                "gpt-5",
                bool(i % 2),
                200 if i % 5 else 429,
                error_code=None if i % 5 else "usage_limit",
                latency_ms=12.5 + i,
                input_tokens=100 + i,
                cached_tokens=i,
                output_tokens=7,
                request_id=f"req_{i}",
                key_user_id=alice.id if i % 3 else None,
            )
        )
    await recorder.close()
    await audit.record(store, "admin", "user.register", "alice", "détail ünïcode", "127.0.0.1")
    await audit.record(store, "user:alice", "key.rotate", None, None, None)
    await store.execute(
        "INSERT INTO limit_snapshots (user_id, primary_used, primary_window_mins, "
        "primary_resets_at, secondary_used, plan_type, fetched_at, ok, error) "
        "VALUES (?, 12.5, 300, 1900000000, 40, 'plus', ?, 1, NULL)",
        (alice.id, now),
    )
    history = QuotaHistory(store, thin_s=1)
    history.take(alice.id, Limits(10.0, 300, 1_900_000_000, 5.0, 10080, 1_900_500_000, "plus", now))
    await history.write()
    # Cluster mode (issue 18): a node, alice's stored login and its lease.
    await leases.heartbeat(store, "node-a", "http://10.0.0.11:8080", now - 60, now, now + 15)
    await logins.save(store, cipher, alice.id, b'{"tokens": {"access_token": "a"}}', "cli")
    assert await leases.acquire(store, alice.id, "node-a", now, now + 15, now - 7.5)
    # Shared state (sharedState, docs/cluster-state.md): a running request, a cooldown, a
    # conversation, a Responses answer, a device flow's row and a failed sign-in.
    await SharedKeyQuotas(store, "node-a:8080", 30).admit(("user", bob.id), KeyLimits())
    await store.execute(
        "INSERT INTO account_cooldowns (user_id, until_ts, reason) VALUES (?, ?, 'usage_limit')",
        (alice.id, now + 600),
    )
    conversations = SharedConversations(_no_release)
    conversations.attach(store, "node-a:8080")
    await conversations.remember(b"d" * 32, ThreadRef(alice.id, str(alice.id), "thread-1"))
    await conversations.remember_response("resp_1", "key:1", ({"type": "message"},))
    await store.execute(
        "INSERT INTO device_flows (user_id, node_id, status, cancel, updated_at) "
        "VALUES (?, 'node-a:8080', '{}', 0, ?)",
        (bob.id, now),
    )
    await SharedLoginThrottle(store).record_failure("portal", "alice", "127.0.0.1")
    # The newest user and key go: their ids must not come back on PostgreSQL either.
    assert await users.delete_user(store, carol.id)
    return {"carol": carol.id}


async def rows_of(store: Store, table: str, order: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.fetchall(f"SELECT * FROM {table} ORDER BY {order}")]


async def test_migrate_store_copies_every_table_row_by_row(
    make_settings: Callable[..., Settings], pg_url: str
) -> None:
    settings = make_settings()
    source = SqliteStore(settings.db_path)
    await source.open()
    try:
        ids = await populate(source)
        tables = [
            r[0]
            for r in await source.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        seq = await source.fetchone("SELECT seq FROM sqlite_sequence WHERE name = 'api_keys'")
        max_key = seq[0]
    finally:
        await source.close()

    done = run_cli(settings, "migrate-store", "--to", pg_url)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "api_keys: 4 rows" in done.stdout and "requests: 30 rows" in done.stdout

    source = SqliteStore(settings.db_path)
    target = postgres_store(pg_url)
    await source.open()
    try:
        await target.open()
        assert {"users", "api_keys", "requests", "audit", "deleted_users"} <= set(tables)
        for table in tables:
            want = await rows_of(source, table, "1")  # the id (limit_snapshots: user id)
            got = await rows_of(target, table, "1")
            assert want, f"{table} was not populated"
            assert got == want, table
        # Ids continue past every id SQLite handed out, deleted ones included.
        dan = await users.create_user(target, "dan", None)
        assert dan.id == ids["carol"] + 1
        await users.rotate_key(
            target, KeyCipher("c" * 40), kind="user", prefix="sk-", user_id=dan.id
        )
        dan_key = await users.live_key_row(target, user_id=dan.id, kind="user")
        assert dan_key is not None and dan_key["id"] == max_key + 1
        # The copied keys work on PostgreSQL.
        bob_key = await users.live_key_row(target, user_id=2, kind="user")
        assert bob_key is not None and bob_key["limits"].requests_per_day == 7
    finally:
        await source.close()
        await target.close()

    again = run_cli(settings, "migrate-store", "--to", pg_url)
    assert again.returncode == 2 and "already holds rows" in again.stderr


def test_check_names_the_backend_and_whether_it_answers(
    make_settings: Callable[..., Settings], pg_url: str, pg_cluster: Any
) -> None:
    done = run_cli(make_settings(databaseUrl=pg_url), "check")
    assert "ok   database: PostgreSQL postgresql://postgres@127.0.0.1" in done.stdout, done.stdout
    assert "reachable, schema version" in done.stdout
    dead = f"postgresql://postgres:hunter2@127.0.0.1:{pg_cluster.port}/no_such_db"
    done = run_cli(make_settings(databaseUrl=dead), "check")
    assert done.returncode == 1
    assert "FAIL database PostgreSQL (databaseUrl) is not usable" in done.stdout, done.stdout
    assert "hunter2" not in done.stdout  # the password never reaches the output
    done = run_cli(make_settings(), "check")
    assert "ok   database: SQLite file" in done.stdout, done.stdout
