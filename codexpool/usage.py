"""Durable per-request usage rows, written off the request path by one background writer.

Handlers only put a row on a queue; the writer batches rows into one transaction. On shutdown
the queue is drained before the database closes, so an acknowledged request is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import accounts
from .store import Store

_LOGGER = logging.getLogger(__name__)
BATCH_MAX = 500


@dataclass
class UsageRow:
    """One API request as stored in `requests`."""

    ts: float
    endpoint: str
    key_id: int | None
    key_kind: str | None
    account_user_id: int | None
    model: str | None
    stream: bool
    status: int
    error_code: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    input_tokens: int | None = None
    cached_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None

    def as_params(self) -> tuple[object, ...]:
        """Return the INSERT parameters (a plain tuple: dataclasses.astuple deep-copies)."""
        return (
            self.ts,
            self.endpoint,
            self.key_id,
            self.key_kind,
            self.account_user_id,
            self.model,
            int(self.stream),
            self.status,
            self.error_code,
            self.latency_ms,
            self.ttft_ms,
            self.input_tokens,
            self.cached_tokens,
            self.output_tokens,
            self.reasoning_tokens,
        )


INSERT_SQL = (
    "INSERT INTO requests (ts, endpoint, key_id, key_kind, account_user_id, model, stream, status,"
    " error_code, latency_ms, ttft_ms, input_tokens, cached_tokens, output_tokens,"
    " reasoning_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class UsageRecorder:
    """Queue + writer task; `record()` never blocks or fails the request that calls it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: asyncio.Queue[UsageRow | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[UsageRow], None]] = []
        self.written = 0

    def add_listener(self, listener: Callable[[UsageRow], None]) -> None:
        """Also hand every recorded row to `listener` (metrics); it must not block or raise."""
        self._listeners.append(listener)

    def record(self, row: UsageRow) -> None:
        """Queue one row."""
        self._queue.put_nowait(row)
        for listener in self._listeners:
            try:
                listener(row)
            except Exception:
                _LOGGER.exception("Usage listener %r failed", listener)

    async def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def close(self) -> None:
        """Stop the writer after it has written every row queued before this call."""
        if self._task is not None:
            self._queue.put_nowait(None)  # sentinel: everything before it gets written
            await self._task
            self._task = None

    async def flush(self) -> None:
        """Wait until every row queued so far is written (tests and shutdown use it)."""
        await self._queue.join()

    async def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[UsageRow] = []
            item = await self._queue.get()
            taken = 1
            if item is None:
                stop = True
            else:
                batch.append(item)
            while not self._queue.empty() and len(batch) < BATCH_MAX:
                item = self._queue.get_nowait()
                taken += 1
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            try:
                await self._write(batch)
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    async def _write(self, batch: list[UsageRow]) -> None:
        """Write one batch, retrying a few times: a locked database is usually brief."""
        if not batch:
            return
        used: dict[int, float] = {}
        for row in batch:
            if row.key_id is not None:
                used[row.key_id] = max(used.get(row.key_id, 0.0), row.ts)
        params = [r.as_params() for r in batch]
        for attempt in range(5):
            try:
                await self._store.executemany(INSERT_SQL, params)
                await accounts.touch_keys(self._store, used)
                self.written += len(batch)
                return
            except Exception:
                _LOGGER.exception("Could not write %s usage rows (try %s)", len(batch), attempt + 1)
                await asyncio.sleep(0.2 * 2**attempt)


async def prune(store: Store, retention_days: int) -> int:
    """Delete usage rows older than the retention; return how many went."""
    cutoff = time.time() - retention_days * 86_400
    return await store.execute("DELETE FROM requests WHERE ts < ?", (cutoff,))


PRUNE_EVERY_S = 6 * 3600


async def run_pruner(store: Store, retention_days: int, every_s: float = PRUNE_EVERY_S) -> None:
    """Prune old usage rows at start-up and then every few hours (a background task)."""
    while True:
        try:
            gone = await prune(store, retention_days)
        except Exception:
            _LOGGER.exception("Pruning usage rows failed")
        else:
            if gone:
                _LOGGER.info("Pruned %s usage rows older than %s days", gone, retention_days)
        await asyncio.sleep(every_s)
