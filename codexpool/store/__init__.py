"""Storage: one schema on two engines, chosen by the `databaseUrl` setting.

Empty `databaseUrl`: the SQLite file in the data folder (sqlite.py), the default for one
machine. `postgresql://...`: a PostgreSQL database shared by several nodes (postgres.py, needs
the `codexpool[postgres]` extra). Both run the numbered migrations of migrations.py and offer
the calls of `Store` (base.py), so domain modules never ask which one they have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    PRIVATE_UMASK,
    Connection,
    Dialect,
    Row,
    Store,
    StoreError,
    StoreUnavailable,
    make_private,
)
from .migrations import MIGRATIONS, SCHEMA_VERSION, migration_sql
from .sqlite import BUSY_TIMEOUT_MS, MARKER_RECHECK_S, SIDECARS, SqliteStore

if TYPE_CHECKING:
    from ..config import Settings

POSTGRES_SCHEMES = ("postgresql://", "postgres://")

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MARKER_RECHECK_S",
    "MIGRATIONS",
    "POSTGRES_SCHEMES",
    "PRIVATE_UMASK",
    "SCHEMA_VERSION",
    "SIDECARS",
    "Connection",
    "Dialect",
    "Row",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "create_store",
    "make_private",
    "migration_sql",
    "postgres_store",
]


def postgres_store(url: str, **options: int) -> Store:
    """Return a PostgresStore for the URL, or raise StoreError when asyncpg is missing."""
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise StoreError(
            "databaseUrl names PostgreSQL but asyncpg is not installed: "
            "pip install 'codexpool[postgres]'"
        ) from exc
    return PostgresStore(url, **options)


def create_store(settings: Settings) -> Store:
    """Return the (unopened) store the settings ask for."""
    if settings.database_url:
        return postgres_store(settings.database_url)
    return SqliteStore(settings.db_path, settings.database_busy_timeout_ms)
