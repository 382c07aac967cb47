"""SQLite storage: one WAL-mode file, the default for a single machine.

Domain queries live next to their logic (users.py, usage.py, ...); this module only owns the
connections, migrations and transactions. The schema itself is in migrations.py, shared with
the PostgreSQL store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from .base import Row, Store, StoreError, make_private
from .migrations import SCHEMA_VERSION, migration_sql

_LOGGER = logging.getLogger(__name__)

SIDECARS = ("-wal", "-shm")  # SQLite's files beside the database in WAL mode
MARKER_MAX = 4096  # bytes; the change marker starts over past this
MARKER_RECHECK_S = 0.025  # another process's write is seen within this
BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's lock before failing


class SqliteConnection:
    """The connection a transaction block gets: the store's query calls on aiosqlite's."""

    __slots__ = ("_db",)

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        async with self._db.execute(sql, params) as cur:
            return cur.rowcount

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one INSERT and return the new row's id."""
        async with self._db.execute(sql, params) as cur:
            return int(cur.lastrowid or 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows."""
        await self._db.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Return the first row or None (inside the transaction: it sees its own writes)."""
        async with self._db.execute(sql, params) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Return all rows."""
        async with self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())


class SqliteStore(Store):
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

    def describe(self) -> str:
        """Return the engine and the file."""
        return f"SQLite file {self.path}"

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
                + migration_sql(version + 1, "sqlite")
                + f"\nPRAGMA user_version = {version + 1};\nCOMMIT;"
            )
        if current < SCHEMA_VERSION:
            async with self.db.execute("PRAGMA foreign_key_check") as cur:
                broken = list(await cur.fetchall())
            if broken:
                _LOGGER.warning("Database %s has dangling references: %s", self.path, broken[:5])

    async def schema_version(self) -> int:
        """Return the database's schema version (PRAGMA user_version)."""
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

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
        """Run one write statement on its own and return the number of rows it changed.

        It takes the transaction lock so it never lands inside another task's transaction
        (which could roll it back); inside `transaction()` use the yielded connection instead.
        """
        async with self._tx_lock:
            try:
                async with self.db.execute(sql, params) as cur:
                    return cur.rowcount
            finally:
                if not bookkeeping:
                    self._changed()  # after the statement: a cache filled before it is dropped

    async def insert(self, sql: str, params: Sequence[Any] = (), bookkeeping: bool = False) -> int:
        """Run one INSERT on its own and return the new row's id (lastrowid)."""
        async with self._tx_lock:
            try:
                async with self.db.execute(sql, params) as cur:
                    return int(cur.lastrowid or 0)
            finally:
                if not bookkeeping:
                    self._changed()

    async def executemany(
        self, sql: str, rows: Iterable[Sequence[Any]], bookkeeping: bool = False
    ) -> None:
        """Run one statement for many parameter rows inside one transaction."""
        async with self.transaction(bookkeeping):
            await self.db.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Return the first row or None (on the read connection)."""
        async with self.reader.execute(sql, params) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Return all rows (on the read connection)."""
        async with self.reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    @asynccontextmanager
    async def transaction(self, bookkeeping: bool = False) -> AsyncIterator[SqliteConnection]:
        """Run the block as one IMMEDIATE transaction, rolled back on error.

        `bookkeeping=True` marks writes no cache depends on (usage rows, last-used times).
        """
        async with self._tx_lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                yield SqliteConnection(self.db)
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

    async def announce_change(self) -> None:
        """Move `change_stamp` here and, through the marker file, in other processes."""
        self._changed()

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
