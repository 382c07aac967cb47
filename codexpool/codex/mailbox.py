"""A turn's incoming messages: a deque and at most one waiting reader.

asyncio.Queue supports many producers and consumers, task accounting and size limits; a turn
has one consumer and needs none of it. Every streamed answer moves about ten messages through
this, so the lighter structure is worth its few lines.

The backlog is bounded: codex keeps sending while a turn's reader is held up (its client
reads slowly), and an unbounded backlog grew the gateway by hundreds of MiB. Past `limit`
waiting messages the mailbox drops what comes and marks itself `overflowed`; the turn then
ends with an error.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


MAX_BACKLOG = 4096  # messages (~4 MiB); a turn this far behind codex has a stalled client


class Mailbox:
    """Messages for one thread, read by the one turn running on it."""

    __slots__ = ("_items", "_waiter", "limit", "overflowed", "_on_overflow")

    def __init__(
        self, limit: int = MAX_BACKLOG, on_overflow: Callable[[], None] | None = None
    ) -> None:
        self._items: collections.deque[dict[str, Any]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.limit = limit
        self.overflowed = False
        self._on_overflow = on_overflow  # called once, when the first message is dropped

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: dict[str, Any]) -> None:
        """Add a message (or drop it past the limit) and wake the reader if it waits."""
        if len(self._items) >= self.limit:
            if not self.overflowed and self._on_overflow is not None:
                self._on_overflow()
            self.overflowed = True
        else:
            self._items.append(message)
        if self._waiter is not None:
            _wake(self._waiter)

    def get_nowait(self) -> dict[str, Any]:
        """Return the oldest message; IndexError when there is none."""
        return self._items.popleft()

    async def wait(self, within_s: float) -> bool:
        """Wait until a message is there or `within_s` seconds pass; tell whether one is."""
        if self._items:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(within_s, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return bool(self._items)
