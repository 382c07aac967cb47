"""Durable per-request usage rows, written off the request path by one background writer.

Handlers only put a row on a queue; the writer batches rows into one transaction. On shutdown
the queue is drained before the database closes, so an acknowledged request is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import quota_history
from .store import Store

_LOGGER = logging.getLogger(__name__)
BATCH_MAX = 500
BATCH_GATHER_S = 0.02
SETTLE_S = 2.0
RETRY_MAX_S = 5.0
ERROR_MESSAGE_MAX = 500  # characters of an error message kept for the request log
CLOSING_ATTEMPTS = 2  # at shutdown a batch gets this many tries before it is spooled


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
    # The request log's detail (never the prompt or the answer): which request, how it was
    # asked, and who said no. key_user_id names the key's owner for per-user filtering.
    request_id: str | None = None
    effort: str | None = None
    error_source: str | None = None
    error_message: str | None = None
    key_user_id: int | None = None

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
            self.request_id,
            self.effort,
            self.error_source,
            None if self.error_message is None else self.error_message[:ERROR_MESSAGE_MAX],
            self.key_user_id,
        )


INSERT_SQL = (
    "INSERT INTO requests (ts, endpoint, key_id, key_kind, account_user_id, model, stream, status,"
    " error_code, latency_ms, ttft_ms, input_tokens, cached_tokens, output_tokens,"
    " reasoning_tokens, request_id, effort, error_source, error_message, key_user_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class UsageRecorder:
    """Queue + writer task; `record()` never blocks or fails the request that calls it."""

    def __init__(self, store: Store, spool_path: Path | None = None) -> None:
        self._store = store
        self._spool_path = spool_path
        self._closing = False
        self._queue: asyncio.Queue[UsageRow | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[UsageRow], None]] = []
        self.written = 0
        self.failing_since: float | None = None  # wall time writes started failing (alerts)

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
        """Write what an earlier run spooled, then start the writer task."""
        await self._replay_spool()
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def close(self) -> None:
        """Stop the writer after it has written every row queued before this call."""
        if self._task is not None:
            self._closing = True
            self._queue.put_nowait(None)  # sentinel: everything before it gets written
            await self._task
            self._task = None

    async def flush(self) -> None:
        """Wait until every row queued so far is written (tests and shutdown use it)."""
        await self._queue.join()

    async def settle(self, within: float = SETTLE_S) -> None:
        """Wait briefly for queued rows, so a usage report includes the request just made;
        a database that cannot be written makes the report a little stale, never stuck."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
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
                # Let a burst gather: one transaction for many rows costs far less than one
                # each, and a row a few milliseconds later harms no one.
                await asyncio.sleep(BATCH_GATHER_S)
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
        """Write one batch, retrying until it lands: rows are never dropped.

        A locked or failing database (another process holding the lock, a full disk) only
        delays the rows; they wait in memory meanwhile. Once closing, a batch that still cannot
        be written goes to the spool file, which the next start writes first.
        """
        if not batch:
            return
        attempt = 0
        while True:
            try:
                await self._insert(batch)
                self.written += len(batch)
                self.failing_since = None
                return
            except Exception as exc:
                attempt += 1
                if self.failing_since is None:
                    self.failing_since = time.time()
                if self._closing and attempt >= CLOSING_ATTEMPTS:
                    self._spool(batch)
                    return
                if attempt == 1 or attempt % 20 == 0:
                    _LOGGER.warning(
                        "Could not write %s usage rows yet (try %s, will retry): %s",
                        len(batch),
                        attempt,
                        exc,
                    )
                await asyncio.sleep(min(RETRY_MAX_S, 0.1 * 2**attempt))

    async def _insert(self, batch: list[UsageRow]) -> None:
        """Insert the rows and the keys' last-used times in one transaction (retry-safe)."""
        used: dict[int, float] = {}
        for row in batch:
            if row.key_id is not None:
                used[row.key_id] = max(used.get(row.key_id, 0.0), row.ts)
        async with self._store.transaction(bookkeeping=True) as db:
            await db.executemany(INSERT_SQL, [r.as_params() for r in batch])
            if used:
                # In id order, so two nodes' batches lock the same keys in the same order.
                await db.executemany(
                    "UPDATE api_keys SET last_used_at = ? "
                    "WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                    [(ts, key_id, ts) for key_id, ts in sorted(used.items())],
                )

    def _spool(self, batch: list[UsageRow]) -> None:
        if self._spool_path is None:
            _LOGGER.error("Lost %s usage rows: the database cannot be written", len(batch))
            return
        try:
            with self._spool_path.open("a", encoding="utf-8") as f:
                for row in batch:
                    f.write(json.dumps(dataclasses.asdict(row)) + "\n")
        except OSError as exc:
            _LOGGER.error("Lost %s usage rows: no database and no spool file (%s)", len(batch), exc)
            return
        _LOGGER.warning(
            "Database not writable at shutdown: %s usage rows kept in %s for the next start",
            len(batch),
            self._spool_path,
        )

    async def _replay_spool(self) -> None:
        """Write the rows an earlier run could not store, then remove the spool file."""
        path = self._spool_path
        if path is None or not path.exists():
            return
        rows: list[UsageRow] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(UsageRow(**json.loads(line)))
            except (ValueError, TypeError):
                _LOGGER.warning("Skipping a damaged line in %s", path)
        try:
            if rows:
                await self._insert(rows)
        except Exception as exc:
            _LOGGER.warning("Spooled usage rows stay in %s until the next start: %s", path, exc)
            return
        path.unlink()
        self.written += len(rows)
        _LOGGER.info("Wrote %s usage rows spooled by an earlier run", len(rows))


async def prune(store: Store, retention_days: int) -> int:
    """Delete usage rows older than the retention; return how many went."""
    cutoff = time.time() - retention_days * 86_400
    return await store.execute("DELETE FROM requests WHERE ts < ?", (cutoff,), bookkeeping=True)


PRUNE_EVERY_S = 6 * 3600


async def run_pruner(store: Store, retention_days: int, every_s: float = PRUNE_EVERY_S) -> None:
    """Prune old usage rows (and quota history points) at start-up and then every few hours (a background task)."""
    while True:
        try:
            gone = await prune(store, retention_days)
            await quota_history.prune(store, retention_days)
        except Exception:
            _LOGGER.exception("Pruning usage rows failed")
        else:
            if gone:
                _LOGGER.info("Pruned %s usage rows older than %s days", gone, retention_days)
        await asyncio.sleep(every_s)
