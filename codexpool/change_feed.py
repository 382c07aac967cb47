"""Cross-node cache invalidation for the caches that must refill at once (sharedState).

Nodes keep caches of stored state: key lookups, the pool's candidate index with its cooldowns,
the admin session fence. The store's `change_stamp` moves whenever any process on the database
committed a write a cache depends on: on SQLite through the marker file beside the database
(every process sharing the file runs on this machine), on PostgreSQL through LISTEN/NOTIFY
from every node. Key lookups compare it on every request already; the pool and the admin
fence are reloaded by this feed, which looks at the stamp every POLL_S (no query: the stamp
is local) and runs its listeners when it moved. A change made on one node is thus honoured by
every other within about POLL_S plus the listener's reload.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from .store import Store

_LOGGER = logging.getLogger(__name__)

POLL_S = 0.5

Listener = Callable[[], Awaitable[None] | None]


class ChangeFeed:
    """Runs its listeners when the store's change stamp moved since the last look."""

    def __init__(self, store: Store, poll_s: float = POLL_S) -> None:
        self._store = store
        self.poll_s = poll_s
        self._listeners: list[Listener] = []
        self._seen = store.change_stamp()

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` (plain or async) after every change seen."""
        self._listeners.append(listener)

    async def poll(self) -> bool:
        """Look at the stamp once; run the listeners and tell whether it moved."""
        stamp = self._store.change_stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        for listener in self._listeners:
            try:
                result = listener()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # one failing cache must not stop the others
                _LOGGER.warning("Change listener failed: %s", exc)
        return True

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self.poll_s)
            await self.poll()
