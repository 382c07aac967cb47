"""Conversation affinity in the database, so a conversation continues from any node.

The `Conversations` interface (conversations.py) over two tables: `conversation_threads`
(digest -> account, thread, the node whose app-server holds the thread, last use) and
`conversation_responses` (Responses API answers for `previous_response_id`). Claiming is a
DELETE ... RETURNING of the longest remembered prefix, so of two nodes claiming one
conversation at once exactly one gets its thread, as on one node. Times are wall-clock: they
are compared across machines.

A thread lives on one node's app-server: only that node releases it (eviction, idle expiry);
another node that continues the conversation runs it on the same account, where the engine
finds no such thread loaded and starts a new one with the history injected (or the cluster
forwards the request to the account's owner node, which holds it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from .conversations import Conversations, Items, ResponseRecord, ThreadRef
from .store import Store

_CHUNK = 400  # digests per IN (...) list
_TAIL = 8  # the last prefixes, asked first
_EXPIRED = object()
_FAR = 1_000_000_000  # "no limit" for LIMIT ... OFFSET, portable between SQLite and PostgreSQL


class SharedConversations(Conversations):
    """Remembered conversations and Responses answers, stored in the database."""

    _store: Store
    node_id: str = ""
    _mine: int = 0

    def attach(self, store: Any, node: str) -> None:
        """Give the registry its database and this node's id."""
        self._store = store
        self.node_id = node

    def __len__(self) -> int:
        return self._mine  # this node's threads, as counted by the last reap

    def count(self, account_id: int) -> int:
        """Return how many conversations one account holds on this node (last reap)."""
        return 0

    async def claim(self, digests: Sequence[bytes]) -> tuple[int, ThreadRef] | None:
        """Take the longest remembered prefix among `digests` (index k: the first k items).

        A continued conversation matches near its end (the history up to the last answer), so
        the last TAIL prefixes are asked first; the rest only when none of them is known.
        """
        now = time.time()
        ks = list(range(len(digests) - 1, 0, -1))
        batches = [ks[:_TAIL]] + [ks[i : i + _CHUNK] for i in range(_TAIL, len(ks), _CHUNK)]
        for chunk in batches:
            if not chunk:
                continue
            wanted = {digests[k].hex(): k for k in chunk}
            marks = ", ".join("?" * len(wanted))
            rows = await self._store.fetchall(
                f"SELECT digest FROM conversation_threads WHERE digest IN ({marks})", list(wanted)
            )
            for k in sorted((wanted[r["digest"]] for r in rows), reverse=True):
                taken = await self._take(digests[k].hex(), now)
                if taken is not None:
                    return (k, taken) if isinstance(taken, ThreadRef) else None  # or _EXPIRED
        return None

    async def _take(self, digest: str, now: float) -> ThreadRef | object | None:
        """Delete one remembered conversation and return its thread (None: another request
        took it first; _EXPIRED: it was idle too long and is released)."""
        async with self._store.transaction(bookkeeping=True) as db:
            row = await db.fetchone(
                "DELETE FROM conversation_threads WHERE digest = ? "
                "RETURNING account_id, account_key, thread_id, node_id, used_at",
                (digest,),
            )
        if row is None:
            return None
        ref = ThreadRef(int(row[0]), str(row[1]), str(row[2]))
        if now - float(row[4]) > self.idle_s:
            if row[3] == self.node_id:
                self.discard(ref)
            return _EXPIRED
        return ref

    async def remember(self, digest: bytes, ref: ThreadRef) -> None:
        """Remember that the conversation with this digest continues on `ref` (this node)."""
        released: list[tuple[Any, ...]] = []
        async with self._store.transaction(bookkeeping=True) as db:
            old = await db.fetchone(
                "DELETE FROM conversation_threads WHERE digest = ? "
                "RETURNING account_id, account_key, thread_id, node_id",
                (digest.hex(),),
            )
            if old is not None and (old[1], old[2]) != (ref.account_key, ref.thread_id):
                released.append(tuple(old))
            await db.execute(
                "INSERT INTO conversation_threads "
                "(digest, account_id, account_key, thread_id, node_id, used_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (digest.hex(), ref.account_id, ref.account_key, ref.thread_id, self.node_id,
                 time.time()),
            )  # fmt: skip
            count = await db.fetchone(
                "SELECT COUNT(*) FROM conversation_threads WHERE account_id = ?", (ref.account_id,)
            )
            evicted: list[Any] = []
            if count is not None and int(count[0]) > self.max_per_account:
                evicted = await db.fetchall(
                    "DELETE FROM conversation_threads WHERE digest IN ("
                    "SELECT digest FROM conversation_threads WHERE account_id = ? "
                    "ORDER BY used_at DESC LIMIT ? OFFSET ?) "
                    "RETURNING account_id, account_key, thread_id, node_id",
                    (ref.account_id, _FAR, self.max_per_account),
                )
            released += [tuple(r) for r in evicted]
        self._release_mine(released)

    def _release_mine(self, rows: list[tuple[Any, ...]]) -> None:
        for account_id, account_key, thread_id, node in rows:
            if node == self.node_id:  # another node's thread is released by that node
                self.discard(ThreadRef(int(account_id), str(account_key), str(thread_id)))

    # --- Responses API answers -------------------------------------------------------------
    async def remember_response(self, response_id: str, scope: str, items: Items) -> None:
        """Keep an answered Responses conversation for `previous_response_id`."""
        await self._store.execute(
            "INSERT INTO conversation_responses (response_id, scope, items, used_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (response_id) DO UPDATE SET scope = excluded.scope, "
            "items = excluded.items, used_at = excluded.used_at",
            (response_id, scope, json.dumps(list(items), ensure_ascii=False), time.time()),
            bookkeeping=True,
        )

    async def response(self, response_id: str, scope: str) -> ResponseRecord | None:
        """Return the conversation a response ended, if it is known to this scope and fresh."""
        row = await self._store.fetchone(
            "SELECT scope, items, used_at FROM conversation_responses WHERE response_id = ?",
            (response_id,),
        )
        now = time.time()
        if row is None or row["scope"] != scope or now - float(row["used_at"]) > self.idle_s:
            return None
        await self._store.execute(
            "UPDATE conversation_responses SET used_at = ? WHERE response_id = ?",
            (now, response_id),
            bookkeeping=True,
        )
        return ResponseRecord(scope, tuple(json.loads(row["items"])), now)

    # --- expiry ----------------------------------------------------------------------------
    async def reap_async(self) -> int:
        """Delete idle conversations and answers (any node's); release this node's threads."""
        cutoff = time.time() - self.idle_s
        async with self._store.transaction(bookkeeping=True) as db:
            rows = await db.fetchall(
                "DELETE FROM conversation_threads WHERE used_at < ? "
                "RETURNING account_id, account_key, thread_id, node_id",
                (cutoff,),
            )
            idle = [tuple(r) for r in rows]
            await db.execute("DELETE FROM conversation_responses WHERE used_at < ?", (cutoff,))
            await db.execute(
                "DELETE FROM conversation_responses WHERE response_id IN ("
                "SELECT response_id FROM conversation_responses ORDER BY used_at DESC "
                "LIMIT ? OFFSET ?)",
                (_FAR, self.max_responses),
            )
        self._release_mine(idle)
        row = await self._store.fetchone(
            "SELECT COUNT(*) FROM conversation_threads WHERE node_id = ?", (self.node_id,)
        )
        self._mine = int(row[0]) if row is not None else 0
        return len(idle)

    async def close(self) -> None:
        """Wait for the releases under way (shutdown); the rows stay for the other nodes."""
        await super().close()
