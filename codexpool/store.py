"""SQLite storage: one WAL-mode file, numbered migrations, and small query helpers.

Domain queries live next to their logic (users.py, usage.py, ...); this module only owns the
connection, the schema and transactions, so schema changes happen in exactly one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

_LOGGER = logging.getLogger(__name__)


PRIVATE_UMASK = 0o077  # the process umask at start: files 0600, folders 0700
SIDECARS = ("-wal", "-shm")  # SQLite's files beside the database in WAL mode


def make_private(path: Path) -> None:
    """Take group and other permissions off a file or folder we own (0755 -> 0700)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & ~0o077)


class StoreError(Exception):
    """The database cannot be used; the message says what to do."""


# Each entry migrates from version i to i+1. Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    # 1: the initial schema of design.md
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        created_at REAL NOT NULL,
        session_epoch INTEGER NOT NULL DEFAULT 0,
        pool_opt_in INTEGER NOT NULL DEFAULT 1,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('user', 'master')),
        label TEXT NOT NULL DEFAULT '',
        digest TEXT NOT NULL UNIQUE,
        ciphertext TEXT NOT NULL,
        hint TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL,
        last_used_at REAL
    );
    CREATE INDEX api_keys_user ON api_keys(user_id, revoked_at);
    CREATE UNIQUE INDEX api_keys_one_live_user_key ON api_keys(user_id)
        WHERE revoked_at IS NULL AND kind = 'user';
    CREATE UNIQUE INDEX api_keys_one_live_master_key ON api_keys(kind)
        WHERE revoked_at IS NULL AND kind = 'master';
    CREATE TABLE limit_snapshots (
        user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        primary_used REAL,
        primary_window_mins INTEGER,
        primary_resets_at INTEGER,
        secondary_used REAL,
        secondary_window_mins INTEGER,
        secondary_resets_at INTEGER,
        plan_type TEXT,
        fetched_at REAL NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT
    );
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        endpoint TEXT NOT NULL,
        key_id INTEGER,
        key_kind TEXT,
        account_user_id INTEGER,
        model TEXT,
        stream INTEGER NOT NULL DEFAULT 0,
        status INTEGER NOT NULL,
        error_code TEXT,
        latency_ms REAL,
        ttft_ms REAL,
        input_tokens INTEGER,
        cached_tokens INTEGER,
        output_tokens INTEGER,
        reasoning_tokens INTEGER
    );
    CREATE INDEX requests_ts ON requests(ts);
    CREATE INDEX requests_account ON requests(account_user_id, ts);
    CREATE INDEX requests_key ON requests(key_id, ts);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT,
        ip TEXT
    );
    CREATE INDEX audit_ts ON audit(ts);
    """,
    # 2: per-key limits (NULL = no cap); allowed_models is newline-separated model ids.
    """
    ALTER TABLE api_keys ADD COLUMN max_requests_per_day INTEGER;
    ALTER TABLE api_keys ADD COLUMN max_tokens_per_day INTEGER;
    ALTER TABLE api_keys ADD COLUMN max_concurrent INTEGER;
    ALTER TABLE api_keys ADD COLUMN allowed_models TEXT;
    """,
    # 3: ids are never reused. Without AUTOINCREMENT SQLite hands a deleted row's id (the
    # highest) to the next insert, so a new registrant inherited a deleted user's usage and
    # today's quota counts. The tables are rebuilt with AUTOINCREMENT (foreign keys are off
    # during migrations) and their counters start past every id the request log still
    # names; deleted users leave a tombstone naming whose rows those are.
    """
    CREATE TABLE users_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        created_at REAL NOT NULL,
        session_epoch INTEGER NOT NULL DEFAULT 0,
        pool_opt_in INTEGER NOT NULL DEFAULT 1,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO users_v3 (id, username, password_hash, created_at, session_epoch, pool_opt_in,
                          disabled)
        SELECT id, username, password_hash, created_at, session_epoch, pool_opt_in, disabled
        FROM users;
    CREATE TABLE api_keys_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('user', 'master')),
        label TEXT NOT NULL DEFAULT '',
        digest TEXT NOT NULL UNIQUE,
        ciphertext TEXT NOT NULL,
        hint TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL,
        last_used_at REAL,
        max_requests_per_day INTEGER,
        max_tokens_per_day INTEGER,
        max_concurrent INTEGER,
        allowed_models TEXT
    );
    INSERT INTO api_keys_v3 (id, user_id, kind, label, digest, ciphertext, hint, created_at,
                             revoked_at, last_used_at, max_requests_per_day, max_tokens_per_day,
                             max_concurrent, allowed_models)
        SELECT id, user_id, kind, label, digest, ciphertext, hint, created_at, revoked_at,
               last_used_at, max_requests_per_day, max_tokens_per_day, max_concurrent,
               allowed_models
        FROM api_keys;
    DROP TABLE api_keys;
    DROP TABLE users;
    ALTER TABLE users_v3 RENAME TO users;
    ALTER TABLE api_keys_v3 RENAME TO api_keys;
    CREATE INDEX api_keys_user ON api_keys(user_id, revoked_at);
    CREATE UNIQUE INDEX api_keys_one_live_user_key ON api_keys(user_id)
        WHERE revoked_at IS NULL AND kind = 'user';
    CREATE UNIQUE INDEX api_keys_one_live_master_key ON api_keys(kind)
        WHERE revoked_at IS NULL AND kind = 'master';
    DELETE FROM sqlite_sequence WHERE name IN ('users', 'api_keys');
    INSERT INTO sqlite_sequence (name, seq) SELECT 'users', MAX(
        (SELECT COALESCE(MAX(id), 0) FROM users),
        (SELECT COALESCE(MAX(account_user_id), 0) FROM requests),
        (SELECT COALESCE(MAX(user_id), 0) FROM limit_snapshots));
    INSERT INTO sqlite_sequence (name, seq) SELECT 'api_keys', MAX(
        (SELECT COALESCE(MAX(id), 0) FROM api_keys),
        (SELECT COALESCE(MAX(key_id), 0) FROM requests));
    CREATE TABLE deleted_users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL,
        deleted_at REAL NOT NULL
    );
    """,
    # 4: the request log (issue 19): what a usage row lacked to explain a request, and indexes
    # that keep a newest-first page cheap under every filter (bench/request_log.py).
    # key_user_id is the key's owner at the time (a key row may be gone later); status / 100
    # is the status class filter.
    """
    ALTER TABLE requests ADD COLUMN request_id TEXT;
    ALTER TABLE requests ADD COLUMN effort TEXT;
    ALTER TABLE requests ADD COLUMN error_source TEXT;
    ALTER TABLE requests ADD COLUMN error_message TEXT;
    ALTER TABLE requests ADD COLUMN key_user_id INTEGER;
    UPDATE requests SET key_user_id = (SELECT user_id FROM api_keys k WHERE k.id = requests.key_id)
        WHERE key_id IS NOT NULL;
    CREATE INDEX requests_key_user ON requests(key_user_id, ts);
    CREATE INDEX requests_status_class ON requests(status / 100, ts);
    CREATE INDEX requests_account_status ON requests(account_user_id, status / 100, ts);
    CREATE INDEX requests_key_user_status ON requests(key_user_id, status / 100, ts);
    """,
    # 5: quota history (issue 19): each account's used-percent over time, thinned to one point
    # per few minutes by quota_history.py, pruned after usageRetentionDays.
    """
    CREATE TABLE quota_history (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        ts REAL NOT NULL,
        primary_used REAL,
        primary_resets_at INTEGER,
        secondary_used REAL,
        secondary_resets_at INTEGER
    );
    CREATE INDEX quota_history_user ON quota_history(user_id, ts);
    CREATE INDEX quota_history_ts ON quota_history(ts);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
MARKER_MAX = 4096  # bytes; the change marker starts over past this
MARKER_RECHECK_S = 0.025  # another process's write is seen within this
BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's lock before failing


class Store:
    """Two aiosqlite connections, each with its own thread: one for writes, one for reads.

    aiosqlite runs a connection's statements one after another on that connection's thread, so
    with a single connection a write waiting out `busy_timeout` (another process holding the
    write lock, e.g. a backup or the CLI) would stall every key lookup behind it. In WAL mode
    readers never wait for writers, so reads get their own query-only connection and keep
    answering while a write waits. Writes commit before they return, so a read that follows a
    write in the same task sees it.
    """

    def __init__(self, path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # Bumped after every committed write of this process except bookkeeping (usage rows),
        # so in-memory caches of stored state (key lookups) filled before it are dropped: a
        # reader that saw the old data took its stamp before the bump. Writes also
        # grow a marker file beside the database, so a cache notices the writes of *other*
        # processes (the CLI rotating a key while the server runs) with one stat().
        self.generation = 0
        self.marker = path.with_name(path.name + ".changed")
        self._marker_ident = (0, 0)
        self._marker_recheck_at = 0.0  # monotonic time of the next stat of the marker
        # Multi-statement transactions must not interleave on the shared connection.
        self._tx_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        """Return the open connection."""
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def open(self) -> None:
        """Open (creating if needed) the database, enable WAL and apply migrations."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            self._db.row_factory = aiosqlite.Row
            await self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await self._db.execute("PRAGMA journal_mode = WAL")
            # Keys, hashes and the audit trail: private even when an older version or another
            # umask created the file.
            for path in (self.path, *(self.path.with_name(self.path.name + x) for x in SIDECARS)):
                if path.exists():
                    make_private(path)
            await self._db.execute("PRAGMA synchronous = NORMAL")
            await self._migrate()  # before foreign keys go on: rebuilding a table needs them off
            await self._db.execute("PRAGMA foreign_keys = ON")
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            self._reader.row_factory = aiosqlite.Row
            await self._reader.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await self._reader.execute("PRAGMA query_only = ON")
        except StoreError:
            await self.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema version {current}, newer than this codexpool "
                f"({SCHEMA_VERSION}); upgrade codexpool or restore a matching backup"
            )
        for version in range(current, SCHEMA_VERSION):
            _LOGGER.info("Migrating database to schema version %s", version + 1)
            # executescript commits on its own; the version bump rides in the same script.
            await self.db.executescript(
                "BEGIN;\n"
                + MIGRATIONS[version]
                + f"\nPRAGMA user_version = {version + 1};\nCOMMIT;"
            )
        if current < SCHEMA_VERSION:
            async with self.db.execute("PRAGMA foreign_key_check") as cur:
                broken = list(await cur.fetchall())
            if broken:
                _LOGGER.warning("Database %s has dangling references: %s", self.path, broken[:5])

    async def close(self) -> None:
        """Close the connections (idempotent)."""
        for name in ("_reader", "_db"):
            conn = getattr(self, name)
            if conn is not None:
                setattr(self, name, None)
                await conn.close()

    @property
    def reader(self) -> aiosqlite.Connection:
        """Return the open query-only connection."""
        if self._reader is None:
            raise StoreError("store is not open")
        return self._reader

    async def execute(self, sql: str, params: Sequence[Any] = (), bookkeeping: bool = False) -> int:
        """Run one write statement on its own and return lastrowid (inserts) or rowcount.

        It takes the transaction lock so it never lands inside another task's transaction
        (which could roll it back); inside `transaction()` use the yielded connection instead.
        """
        async with self._tx_lock:
            try:
                async with self.db.execute(sql, params) as cur:
                    if sql.lstrip().upper().startswith("INSERT"):
                        return cur.lastrowid or 0  # an INSERT sets it; 0 = no row inserted yet
                    return cur.rowcount
            finally:
                if not bookkeeping:
                    self._changed()  # after the statement: a cache filled before it is dropped

    async def executemany(
        self, sql: str, rows: Iterable[Sequence[Any]], bookkeeping: bool = False
    ) -> None:
        """Run one statement for many parameter rows inside one transaction."""
        async with self.transaction(bookkeeping):
            await self.db.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        """Return the first row or None (on the read connection)."""
        async with self.reader.execute(sql, params) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """Return all rows (on the read connection)."""
        async with self.reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    @asynccontextmanager
    async def transaction(self, bookkeeping: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """Run the block as one IMMEDIATE transaction, rolled back on error.

        `bookkeeping=True` marks writes no cache depends on (usage rows, last-used times).
        """
        async with self._tx_lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                await self.db.execute("COMMIT")
            except BaseException:
                # Also when cancelled while BEGIN or COMMIT waited: the statement still runs in
                # aiosqlite's thread, and a transaction left open there would make every later
                # BEGIN fail ("cannot start a transaction within a transaction"). The ROLLBACK
                # queues behind it; it finds nothing to undo when BEGIN failed or COMMIT ran.
                with contextlib.suppress(sqlite3.Error):
                    await self.db.execute("ROLLBACK")
                raise
            if not bookkeeping:
                self._changed()  # after the commit: a cache filled before it is dropped

    def _changed(self) -> None:
        self.generation += 1
        try:
            grown = self.marker.stat().st_size < MARKER_MAX
        except OSError:
            grown = False
        try:
            with self.marker.open("ab" if grown else "wb") as f:
                f.write(b".")  # the size changes on every write, whatever the clock's grain
        except OSError as exc:
            _LOGGER.debug("Cannot update %s: %s", self.marker, exc)

    def change_stamp(self) -> tuple[int, int, int]:
        """Return a value that changes whenever any process wrote through a Store.

        This process's own writes count at once (the generation). Other processes' (the CLI's)
        are seen through the marker file, stat()ed at most every MARKER_RECHECK_S: a stat
        costs ~10 us here, and every API request asks.
        """
        now = time.monotonic()
        if now >= self._marker_recheck_at:
            try:
                st = os.stat(self.marker)
                self._marker_ident = (st.st_mtime_ns, st.st_size)
            except OSError:
                self._marker_ident = (0, 0)
            self._marker_recheck_at = now + MARKER_RECHECK_S
        return (self.generation, *self._marker_ident)

    async def ping(self) -> bool:
        """Tell whether the database answers a trivial query (for /api/health)."""
        try:
            await self.fetchone("SELECT 1")
        except (sqlite3.Error, StoreError, ValueError):
            return False
        return True
