"""The node registry and account leases in the database: plain async functions over a Store.

A lease row says which node owns an account until when (wall time). The owner renews all of
its leases in one statement every few seconds. Another node may take an account only when its
lease is missing (never owned, or released by an owner that stopped it first) or expired for
longer than the safety margin: the old owner stopped that account's codex processes before
its lease could expire (node.py), and the margin absorbs clock skew between machines.

The SQL is portable: `?` placeholders, ON CONFLICT, RETURNING (SQLite 3.35+, PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..store import Store


@dataclass(frozen=True)
class NodeRow:
    """A node as the registry holds it."""

    id: str
    url: str
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True)
class LeaseRow:
    """Which node owns one account, since and until when (wall times)."""

    user_id: int
    node_id: str
    acquired_at: float
    expires_at: float


async def heartbeat(
    store: Store, node_id: str, url: str, started_at: float, now: float, expires_at: float
) -> None:
    """Register this node or refresh its heartbeat (and its URL, which may have changed), and
    extend every lease it holds to `expires_at`: one transaction, one write lock per tick."""
    async with store.transaction(bookkeeping=True) as db:
        await db.execute(
            "INSERT INTO cluster_nodes (id, url, started_at, heartbeat_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET url = excluded.url, "
            "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
            (node_id, url, started_at, now),
        )
        await db.execute(
            "UPDATE account_leases SET expires_at = ? WHERE node_id = ?", (expires_at, node_id)
        )


async def forget_node(store: Store, node_id: str) -> None:
    """Remove a node from the registry (clean shutdown, after its leases were released)."""
    await store.execute("DELETE FROM cluster_nodes WHERE id = ?", (node_id,), bookkeeping=True)


async def prune_nodes(store: Store, older_than: float) -> None:
    """Remove nodes whose last heartbeat is older than `older_than` (long dead)."""
    await store.execute(
        "DELETE FROM cluster_nodes WHERE heartbeat_at < ?", (older_than,), bookkeeping=True
    )


async def nodes(store: Store) -> list[NodeRow]:
    """Return the registered nodes, by id."""
    rows = await store.fetchall(
        "SELECT id, url, started_at, heartbeat_at FROM cluster_nodes ORDER BY id"
    )
    return [NodeRow(r["id"], r["url"], r["started_at"], r["heartbeat_at"]) for r in rows]


async def leases(store: Store) -> list[LeaseRow]:
    """Return every lease, by account."""
    rows = await store.fetchall(
        "SELECT user_id, node_id, acquired_at, expires_at FROM account_leases ORDER BY user_id"
    )
    return [
        LeaseRow(int(r["user_id"]), r["node_id"], r["acquired_at"], r["expires_at"]) for r in rows
    ]


async def acquire(
    store: Store, user_id: int, node_id: str, now: float, expires_at: float, taken_before: float
) -> bool:
    """Take an account's lease when it is free: no row, or a row that expired before
    `taken_before` (now minus the safety margin). Tell whether this node owns it now.

    The upsert's WHERE is the guard: two nodes racing for one account both run it, and only
    one row can come back naming its node.
    """
    async with store.transaction(bookkeeping=True) as db:
        if await db.fetchone("SELECT 1 FROM account_logins WHERE user_id = ?", (user_id,)) is None:
            return False  # unlinked meanwhile
        rows = await db.fetchall(
            "INSERT INTO account_leases (user_id, node_id, acquired_at, expires_at) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET node_id = excluded.node_id, "
            "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at "
            "WHERE account_leases.expires_at < ? OR account_leases.node_id = excluded.node_id "
            "RETURNING node_id",
            (user_id, node_id, now, expires_at, taken_before),
        )
    return bool(rows) and rows[0][0] == node_id


async def release(store: Store, user_id: int, node_id: str) -> bool:
    """Give an account up (its codex processes already stopped): another node may take it at
    once. Tell whether this node still held it."""
    changed = await store.execute(
        "DELETE FROM account_leases WHERE user_id = ? AND node_id = ?",
        (user_id, node_id),
        bookkeeping=True,
    )
    return changed > 0


async def drop(store: Store, user_id: int) -> None:
    """Remove an account's lease whoever holds it (the account was unlinked)."""
    await store.execute(
        "DELETE FROM account_leases WHERE user_id = ?", (user_id,), bookkeeping=True
    )
