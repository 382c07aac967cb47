"""Cross-node cache invalidation: a change counter in the database, polled (sharedState).

Nodes keep caches of stored state on their request path (key lookups, the pool's candidate
index, the admin session fence). On one machine the store's marker file tells a process about
another's writes; nodes on other machines cannot see it. With shared state every write a cache
depends on also bumps `state_changes` in the same transaction (Store.shared), and each node
reads that one row every POLL_S: when it moved, the node drops its caches (the store's
generation, which KeyCache compares) and runs its listeners (pool reload, admin fence reload).
A change made on one node is thus honoured by every other within about POLL_S.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from .store import Store

_LOGGER = logging.getLogger(__name__)

POLL_S = 0.5
_READ = "SELECT n FROM state_changes WHERE name = 'all'"

Listener = Callable[[], Awaitable[None] | None]


class ChangeFeed:
    """Polls the change counter and invalidates this node's caches when it moves."""

    def __init__(self, store: Store, poll_s: float = POLL_S) -> None:
        self._store = store
        self.poll_s = poll_s
        self._listeners: list[Listener] = []
        self._seen: int | None = None

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` (plain or async) after every change seen from the database."""
        self._listeners.append(listener)

    async def poll(self) -> bool:
        """Read the counter once; tell whether it moved since the last read."""
        row = await self._store.fetchone(_READ)
        n = int(row[0]) if row is not None else 0
        moved = self._seen is not None and n != self._seen
        self._seen = n
        if moved:
            self._store.generation += 1  # every cache keyed on change_stamp() refills
            for listener in self._listeners:
                try:
                    result = listener()
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:  # one failing cache must not stop the others
                    _LOGGER.warning("Change listener failed: %s", exc)
        return moved

    async def run(self) -> None:
        """Poll until cancelled; a failed read (database away) is retried next round."""
        while True:
            try:
                await self.poll()
            except Exception as exc:
                _LOGGER.debug("Cannot read the change counter: %s", exc)
            await asyncio.sleep(self.poll_s)
