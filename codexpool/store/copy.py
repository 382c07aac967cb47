"""`codexpool migrate-store`: copy the SQLite file into an empty PostgreSQL database.

Both databases are first brought to the same schema version by their own migrations, so the
tables and columns match by name. Every table of the SQLite file is copied (parents before
children, for the foreign keys), each in id (rowid) order, with binary COPY, all in one
PostgreSQL transaction: a failure leaves the target empty. Afterwards each identity column's
sequence moves past the highest id SQLite ever handed out (sqlite_sequence, which remembers
deleted rows' ids too), so ids are never reused on PostgreSQL either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from .base import Store, StoreError
from .postgres import PostgresStore
from .sqlite import SqliteStore

BATCH = 5000  # rows read from SQLite and sent per COPY


def _order(tables: dict[str, set[str]]) -> list[str]:
    """Return the table names with every table after the tables it references."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen or name in path:
            return  # a cycle (or self-reference) cannot be ordered further; rows keep id order
        for parent in sorted(tables.get(name, set())):
            visit(parent, (*path, name))
        seen.add(name)
        done.append(name)

    for name in sorted(tables):
        visit(name, ())
    return done


def _coercer(pg_type: str) -> Callable[[Any], Any]:
    """Return a converter from a SQLite value (dynamically typed) to the PostgreSQL column's."""
    if pg_type in ("bigint", "integer", "smallint"):
        return int
    if pg_type in ("double precision", "real", "numeric"):
        return float
    if pg_type == "text":
        return lambda v: v if isinstance(v, str) else str(v)
    if pg_type == "boolean":
        return bool
    return lambda v: v


async def _sqlite_tables(source: SqliteStore) -> dict[str, set[str]]:
    rows = await source.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    tables: dict[str, set[str]] = {}
    for (name,) in rows:
        refs = await source.fetchall(f'PRAGMA foreign_key_list("{name}")')
        tables[name] = {r["table"] for r in refs} - {name}
    return tables


async def copy_sqlite_to_postgres(
    source: SqliteStore, target: Store, say: Callable[[str], None] = print
) -> dict[str, int]:
    """Copy every table of `source` into the empty `target`; return the row count per table.

    Both stores must be open (so both are migrated to SCHEMA_VERSION). Raises StoreError when
    the schema versions differ, a table or column is missing on PostgreSQL, or the target
    already holds rows.
    """
    if not isinstance(target, PostgresStore):
        raise StoreError("the target of migrate-store must be a PostgreSQL database")
    versions = (await source.schema_version(), await target.schema_version())
    if versions[0] != versions[1]:
        raise StoreError(f"schema versions differ (SQLite {versions[0]}, PostgreSQL {versions[1]})")
    tables = _order(await _sqlite_tables(source))
    sequences = {
        r["name"]: int(r["seq"])
        for r in await source.fetchall("SELECT name, seq FROM sqlite_sequence")
    }
    counts: dict[str, int] = {}
    async with target.pool.acquire() as conn, conn.transaction():
        pg_columns: dict[str, dict[str, str]] = {}
        for r in await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        ):
            pg_columns.setdefault(r["table_name"], {})[r["column_name"]] = r["data_type"]
        for table in tables:
            if table not in pg_columns:
                raise StoreError(f"table {table} of the SQLite file is missing on PostgreSQL")
            if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")'):
                raise StoreError(
                    f"PostgreSQL table {table} already holds rows: migrate-store copies into an "
                    "empty database only"
                )
        for table in tables:
            info = await source.fetchall(f'PRAGMA table_info("{table}")')
            columns = [r["name"] for r in info]
            missing = [c for c in columns if c not in pg_columns[table]]
            if missing:
                raise StoreError(f"columns {missing} of table {table} are missing on PostgreSQL")
            coerce = [_coercer(pg_columns[table][c]) for c in columns]
            counts[table] = 0
            async for batch in _batches(source, table, columns):
                records = [
                    tuple(None if v is None else f(v) for f, v in zip(coerce, row, strict=True))
                    for row in batch
                ]
                await conn.copy_records_to_table(table, records=records, columns=columns)
                counts[table] += len(records)
            numeric_id = pg_columns[table].get("id") in ("bigint", "integer", "smallint")
            top = (
                max(int(await conn.fetchval(_max_id(table, columns)) or 0), 0) if numeric_id else 0
            )
            top = max(top, sequences.get(table, 0))
            sequence = (
                await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
                if "id" in columns
                else None
            )
            if sequence is not None and top > 0:
                await conn.execute("SELECT setval($1, $2, true)", sequence, top)
            say(f"{table}: {counts[table]} rows")
        for table, count in counts.items():
            copied = await conn.fetchval(f'SELECT COUNT(*) FROM "{table}"')
            if copied != count:
                raise StoreError(f"table {table}: copied {copied} rows, expected {count}")
    return counts


def _max_id(table: str, columns: list[str]) -> str:
    return f'SELECT MAX(id) FROM "{table}"' if "id" in columns else "SELECT 0"


async def _batches(source: SqliteStore, table: str, columns: list[str]) -> Any:
    """Yield the table's rows in rowid (= id) order, BATCH at a time."""
    names = ", ".join(f'"{c}"' for c in columns)
    try:
        last = None
        while True:
            rows = await source.fetchall(
                f'SELECT rowid, {names} FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT ?',
                (-(2**63) if last is None else last, BATCH),
            )
            if not rows:
                return
            last = rows[-1][0]
            yield [tuple(r)[1:] for r in rows]
    except sqlite3.OperationalError:  # a WITHOUT ROWID table: by its primary key, at once
        yield [tuple(r) for r in await source.fetchall(f'SELECT {names} FROM "{table}" ORDER BY 1')]
