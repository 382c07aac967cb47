"""What every store backend offers: the query API the domain modules use, and its errors.

Domain modules write one SQL text for both engines: `?` placeholders (or `?1`, `?2`), no
SQLite-only functions, `ON CONFLICT` upserts, `Store.insert` for a new row's id. Rows are
indexable by column name and by position on both (sqlite3.Row, asyncpg.Record). The few
expressions the engines spell differently come from `Store.sql` (a `Dialect`).
"""

from __future__ import annotations

import stat
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

PRIVATE_UMASK = 0o077  # the process umask at start: files 0600, folders 0700

Row = Any  # sqlite3.Row or asyncpg.Record: row["name"] and row[0] both work


def make_private(path: Path) -> None:
    """Take group and other permissions off a file or folder we own (0755 -> 0700)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & ~0o077)


class StoreError(Exception):
    """The database cannot be used; the message says what to do."""


class StoreUnavailable(StoreError):
    """The database server cannot be reached right now (the app answers 503 and retries later)."""


class Dialect:
    """SQL fragments the two engines spell differently (SQLite's spelling here)."""

    name = "sqlite"

    def utc_day(self, seconds: str) -> str:
        """Return an expression giving the UTC day `YYYY-MM-DD` of a Unix-seconds expression."""
        return f"date({seconds}, 'unixepoch')"

    def bucket(self, seconds: str, size: int) -> str:
        """Return an integer expression: floor(seconds / size) for non-negative seconds."""
        return f"CAST({seconds} / {int(size)} AS INTEGER)"


class PostgresDialect(Dialect):
    """PostgreSQL's spellings: CAST rounds there, so floors are explicit."""

    name = "postgresql"

    def utc_day(self, seconds: str) -> str:
        """Return an expression giving the UTC day `YYYY-MM-DD` of a Unix-seconds expression."""
        return f"to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def bucket(self, seconds: str, size: int) -> str:
        """Return an integer expression: floor(seconds / size)."""
        return f"CAST(floor({seconds} / {int(size)}) AS BIGINT)"


class Connection(Protocol):
    """The connection a `Store.transaction()` block gets: the same calls as the store's own."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        ...

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one INSERT into a table with an `id` column and return the new row's id."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Return the first row or None."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Return all rows."""
        ...


class Store(ABC):
    """A database with codexpool's schema: SQLite (one file) or PostgreSQL (shared by nodes).

    Writes commit before they return, so a read that follows a write in the same task sees it.
    `bookkeeping=True` marks writes no cache depends on (usage rows, last-used times), so they
    do not invalidate cached key lookups (`change_stamp`).
    """

    dialect: str = "sqlite"
    sql: Dialect = Dialect()

    @abstractmethod
    async def open(self) -> None:
        """Connect, creating the schema or migrating it to SCHEMA_VERSION."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connections (idempotent)."""

    @abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = (), bookkeeping: bool = False) -> int:
        """Run one write statement on its own and return the number of rows it changed."""

    @abstractmethod
    async def insert(self, sql: str, params: Sequence[Any] = (), bookkeeping: bool = False) -> int:
        """Run one INSERT into a table with an `id` column and return the new row's id."""

    @abstractmethod
    async def executemany(
        self, sql: str, rows: Iterable[Sequence[Any]], bookkeeping: bool = False
    ) -> None:
        """Run one statement for many parameter rows inside one transaction."""

    @abstractmethod
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Return the first row or None."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Return all rows."""

    @abstractmethod
    def transaction(self, bookkeeping: bool = False) -> AbstractAsyncContextManager[Connection]:
        """Run the block as one write transaction, rolled back on error.

        Write transactions run one at a time (SQLite's BEGIN IMMEDIATE; on PostgreSQL a
        transaction-level advisory lock across every node), so a read-then-write inside one
        sees no other transaction's writes in between, on both engines alike.
        """

    @abstractmethod
    async def schema_version(self) -> int:
        """Return the database's schema version (the number of migrations applied)."""

    @abstractmethod
    def change_stamp(self) -> tuple[int, ...]:
        """Return a value that changes whenever any process wrote through a Store.

        Cheap enough to call on every API request; caches of stored state compare it.
        """

    @abstractmethod
    async def announce_change(self) -> None:
        """Tell every cache of stored state, in every process on this database, that something
        they depend on changed although it was written as bookkeeping (an admin logout lives
        in the audit log): `change_stamp` moves here and elsewhere."""

    @abstractmethod
    def describe(self) -> str:
        """Return a one-line, password-free description: engine and location."""

    async def ping(self) -> bool:
        """Tell whether the database answers a trivial query (for /api/health)."""
        try:
            await self.fetchone("SELECT 1")
        except Exception:  # any failure means "not reachable" to a health check
            return False
        return True
