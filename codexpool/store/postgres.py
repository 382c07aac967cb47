"""PostgreSQL storage through an asyncpg pool: the shared database of several gateway nodes.

The domain modules' SQL is written once with `?` placeholders; `to_postgres` rewrites it to
`$n` (cached). Migrations are the numbered ones of migrations.py, applied under an advisory lock
so nodes starting together apply each exactly once. A server that cannot be reached raises
`StoreUnavailable` (the app answers 503 `database_unavailable`); the pool reconnects by itself
when it is back. Other processes' writes reach `change_stamp` through LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .base import PostgresDialect, Row, Store, StoreError, StoreUnavailable
from .migrations import SCHEMA_VERSION, migration_sql

_LOGGER = logging.getLogger(__name__)

# pg_advisory_lock keys (any 64-bit numbers no other application on the database uses).
MIGRATION_LOCK = 0x636F_6465_7870_0001
WRITE_LOCK = 0x636F_6465_7870_0002
CHANGES_CHANNEL = "codexpool_changed"
SCHEMA_TABLE = "codexpool_schema"
CONNECT_TIMEOUT_S = 5.0  # an unreachable server fails a request after this, not a minute
COMMAND_TIMEOUT_S = 60.0
POOL_MIN = 1
POOL_MAX = 10
LISTEN_RETRY_S = 1.0

_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?(\d*)|\bIS\s+(NOT\s+)?\?(\d*)", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def to_postgres(sql: str) -> str:
    """Rewrite SQLite placeholders (`?`, `?N`) to PostgreSQL's `$N`; string literals stay.

    `x IS ?` (SQLite's null-safe comparison) becomes `x IS NOT DISTINCT FROM $N`.
    """
    count = 0

    def number(explicit: str) -> int:
        nonlocal count
        if explicit:
            return int(explicit)
        count += 1
        return count

    def replace(m: re.Match[str]) -> str:
        text = m.group(0)
        if text.startswith("'"):
            return text
        if m.group(1) is not None:
            return f"${number(m.group(1))}"
        negated = "" if m.group(2) else "NOT "  # IS ? = IS NOT DISTINCT FROM; IS NOT ? = IS ...
        return f"IS {negated}DISTINCT FROM ${number(m.group(3))}"

    return _PLACEHOLDER.sub(replace, sql)


def _status_count(status: str) -> int:
    """Return the row count of a command tag such as 'UPDATE 3' or 'INSERT 0 1'."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def _numeric(text: str) -> int | float:
    """Decode NUMERIC (what SUM over BIGINT returns) to int or float, as SQLite gives them."""
    return int(text) if text.lstrip("-").isdigit() else float(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "numeric", encoder=str, decoder=_numeric, schema="pg_catalog", format="text"
    )


def unreachable(exc: BaseException) -> bool:
    """Tell whether an error means the server cannot be reached (rather than a bad query)."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.PostgresConnectionError):
        return True
    if isinstance(
        exc, asyncpg.exceptions.OperatorInterventionError | asyncpg.TooManyConnectionsError
    ):
        return True  # shutting down, starting up, crashed, full
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def redact(url: str) -> str:
    """Return the URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))


class PostgresConnection:
    """The connection a transaction block gets: the store's query calls on asyncpg's."""

    __slots__ = ("_conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        return _status_count(await self._conn.execute(to_postgres(sql), *params))

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one INSERT and return the new row's id."""
        return int(await self._conn.fetchval(to_postgres(sql) + " RETURNING id", *params) or 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows."""
        await self._conn.executemany(to_postgres(sql), rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Return the first row or None."""
        return await self._conn.fetchrow(to_postgres(sql), *params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Return all rows."""
        rows: list[Row] = await self._conn.fetch(to_postgres(sql), *params)
        return rows


class PostgresStore(Store):
    """A pool of asyncpg connections to one PostgreSQL database."""

    dialect = "postgresql"
    sql = PostgresDialect()

    def __init__(self, url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> None:
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self.generation = 0  # this process's committed writes
        self._notified = 0  # writes announced on CHANGES_CHANNEL (any node's, ours included)
        self._blind = 0  # bumped on every look while no listener runs: caches cannot trust
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        """Return the engine and the URL without its password."""
        return f"PostgreSQL {redact(self.url)}"

    @property
    def pool(self) -> asyncpg.Pool:
        """Return the open pool."""
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect, apply pending migrations under the advisory lock, start listening."""
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                init=_init_connection,
            )
            await self._migrate()
        except StoreError:
            await self.close()
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            await self.close()
            raise StoreError(f"cannot open database {redact(self.url)}: {exc}") from exc
        self._listen_task = asyncio.create_task(self._listen(), name="store-listen")

    async def _migrate(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER NOT NULL)"
                )
                current = await conn.fetchval(f"SELECT max(version) FROM {SCHEMA_TABLE}")
                if current is None:
                    await conn.execute(f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (0)")
                    current = 0
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"database {redact(self.url)} has schema version {current}, newer than "
                        f"this codexpool ({SCHEMA_VERSION}); upgrade codexpool"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    _LOGGER.info("Migrating database to schema version %s", version)
                    async with conn.transaction():
                        await conn.execute(migration_sql(version, "postgresql"))
                        await conn.execute(f"UPDATE {SCHEMA_TABLE} SET version = $1", version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    async def schema_version(self) -> int:
        """Return the database's schema version."""
        row = await self.fetchone(f"SELECT max(version) FROM {SCHEMA_TABLE}")
        return int(row[0] or 0) if row else 0

    async def close(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        task, self._listen_task = self._listen_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    # --- change notifications -------------------------------------------------------------
    async def _listen(self) -> None:
        """Keep one connection LISTENing on CHANGES_CHANNEL, reconnecting when it drops."""
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
            except Exception as exc:
                _LOGGER.debug("Cannot listen for changes yet: %s", exc)
                await asyncio.sleep(LISTEN_RETRY_S)
                continue
            try:
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANGES_CHANNEL, self._on_change)
                self._listener = conn
                self._notified += 1  # writes may have gone unheard while no one listened
                await lost.wait()
                _LOGGER.warning("Lost the change listener's database connection; reconnecting")
            except Exception as exc:
                _LOGGER.debug("Cannot listen for changes: %s", exc)
            finally:
                self._listener = None
                if not conn.is_closed():
                    conn.terminate()  # no round trip: also safe when cancelled
            await asyncio.sleep(LISTEN_RETRY_S)

    def _on_change(self, *_args: object) -> None:
        self._notified += 1

    def change_stamp(self) -> tuple[int, int, int]:
        """Return a value that changes whenever any node wrote (its NOTIFY arrived here).

        While the listener is down nothing tells us of other nodes' writes, so every look
        returns a new value and caches refill from the database.
        """
        listener = self._listener
        if listener is None or listener.is_closed():
            self._blind += 1
        return (self.generation, self._notified, self._blind)

    # --- queries ----------------------------------------------------------------------------
    async def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        if self._pool is not None:
            await self._pool.expire_connections()  # idle ones are likely dead too: replace all
        _LOGGER.warning("Database %s unreachable: %s", redact(self.url), exc)
        return StoreUnavailable(f"database unreachable: {exc}")

    async def _read(self, method: str, sql: str, params: Sequence[Any]) -> Any:
        """Run a read, once more on a fresh connection when the first one turns out dead."""
        query = to_postgres(sql)
        for attempt in (1, 2):
            try:
                return await getattr(self.pool, method)(query, *params)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                if attempt == 2:
                    raise await self._unavailable(exc) from exc
                await self.pool.expire_connections()
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Return the first row or None."""
        return await self._read("fetchrow", sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Return all rows."""
        rows: list[Row] = await self._read("fetch", sql, params)
        return rows

    async def execute(self, sql: str, params: Sequence[Any] = (), bookkeeping: bool = False) -> int:
        """Run one write statement on its own and return the number of rows it changed."""
        try:
            async with self.pool.acquire() as conn:
                count = _status_count(await conn.execute(to_postgres(sql), *params))
                if not bookkeeping:
                    await self._announce(conn)
        except Exception as exc:
            if unreachable(exc):
                raise await self._unavailable(exc) from exc
            raise
        return count

    async def insert(self, sql: str, params: Sequence[Any] = (), bookkeeping: bool = False) -> int:
        """Run one INSERT on its own and return the new row's id (RETURNING id)."""
        try:
            async with self.pool.acquire() as conn:
                new_id = await conn.fetchval(to_postgres(sql) + " RETURNING id", *params)
                if not bookkeeping:
                    await self._announce(conn)
        except Exception as exc:
            if unreachable(exc):
                raise await self._unavailable(exc) from exc
            raise
        return int(new_id or 0)

    async def announce_change(self) -> None:
        """Move `change_stamp` here and, through NOTIFY, on every other node."""
        try:
            async with self.pool.acquire() as conn:
                await self._announce(conn)
        except Exception as exc:
            if unreachable(exc):
                raise await self._unavailable(exc) from exc
            raise

    async def _announce(self, conn: asyncpg.Connection) -> None:
        self.generation += 1
        await conn.execute("SELECT pg_notify($1, '')", CHANGES_CHANNEL)

    async def executemany(
        self, sql: str, rows: Iterable[Sequence[Any]], bookkeeping: bool = False
    ) -> None:
        """Run one statement for many parameter rows inside one transaction."""
        async with self.transaction(bookkeeping) as conn:
            await conn.executemany(sql, rows)

    @asynccontextmanager
    async def transaction(self, bookkeeping: bool = False) -> AsyncIterator[PostgresConnection]:
        """Run the block as one transaction, one write transaction at a time across nodes.

        The transaction-level advisory lock gives the block what SQLite's BEGIN IMMEDIATE
        gives it (no other transaction's writes between its reads and writes). Bookkeeping
        blocks (append-only usage rows, monotonic last-used times) skip it.
        """
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if not bookkeeping:
                    # The notification goes out at COMMIT, and not at all on rollback.
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock($1), pg_notify($2, '')",
                        WRITE_LOCK,
                        CHANGES_CHANNEL,
                    )
                yield PostgresConnection(conn)
        except Exception as exc:
            if unreachable(exc):
                raise await self._unavailable(exc) from exc
            raise
        if not bookkeeping:
            self.generation += 1
