"""Each account's Codex limits (5-hour and weekly windows): cached, refreshed, persisted.

Values come from two places: `account/rateLimits/read` through the account's app-server (the
background refresher, or an on-demand read for an account never read), and the
`account/rateLimits/updated` pushes the app-server sends after every turn (taken for free, so a
busy account is never read again while its pushes keep it fresh). A read that keeps failing
falls back to the last good snapshot, marked stale with its age; the last snapshot is written
to `limit_snapshots` so it survives a restart.

Everything the pool consults is in memory and synchronous; only the refresher and the
persister touch the codex processes and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .codex.engine import Engine
from .codex.events import RateLimitSnapshot, TurnError
from .store import Store

if TYPE_CHECKING:
    from .quota_history import QuotaHistory

_LOGGER = logging.getLogger(__name__)

READ_TRIES = 3
READ_BACKOFF_S = (0.3, 1.0)  # waits between the tries of one read
REFRESH_CONCURRENCY = 2  # each read may start an app-server: ~0.3 s of CPU on a small box
MERGE_EVERY_S = 2.0  # sharedState: how often other nodes' stored snapshots are taken in
JITTER = 0.2  # a read is due between (1 - JITTER) * ttl and ttl after the last one


@dataclass(frozen=True)
class Limits:
    """One account's last known limits; `ok` False means the newest read failed (stale)."""

    primary_used: float | None
    primary_window_mins: int | None
    primary_resets_at: int | None
    secondary_used: float | None
    secondary_window_mins: int | None
    secondary_resets_at: int | None
    plan_type: str | None
    fetched_at: float  # wall time of the values (not of the failed read that made them stale)
    ok: bool = True
    error: str | None = None

    @classmethod
    def from_snapshot(cls, snap: RateLimitSnapshot, now: float) -> Limits:
        """Build from an app-server snapshot."""
        p, s = snap.primary, snap.secondary
        return cls(
            p.used_percent if p else None,
            p.window_mins if p else None,
            p.resets_at if p else None,
            s.used_percent if s else None,
            s.window_mins if s else None,
            s.resets_at if s else None,
            snap.plan_type,
            now,
        )

    def hourly_remaining(self, now: float | None = None) -> float | None:
        """Return percent left in the 5-hour window (100 once its reset time has passed)."""
        return _remaining(self.primary_used, self.primary_resets_at, now)

    def weekly_remaining(self, now: float | None = None) -> float | None:
        """Return percent left in the weekly window (100 once its reset time has passed)."""
        return _remaining(self.secondary_used, self.secondary_resets_at, now)

    def age(self, now: float) -> float:
        """Return how old the values are, in seconds."""
        return max(0.0, now - self.fetched_at)


def _remaining(used: float | None, resets_at: int | None, now: float | None) -> float | None:
    if used is None:
        return None
    if now is not None and resets_at is not None and resets_at <= now:
        return 100.0  # the window has reset since the values were read
    return round(max(0.0, min(100.0, 100.0 - float(used))), 1)


_COLUMNS = (
    "primary_used, primary_window_mins, primary_resets_at, secondary_used, "
    "secondary_window_mins, secondary_resets_at, plan_type, fetched_at, ok, error"
)
_UPSERT = (
    f"INSERT INTO limit_snapshots (user_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(user_id) DO UPDATE SET primary_used = excluded.primary_used, "
    "primary_window_mins = excluded.primary_window_mins, "
    "primary_resets_at = excluded.primary_resets_at, secondary_used = excluded.secondary_used, "
    "secondary_window_mins = excluded.secondary_window_mins, "
    "secondary_resets_at = excluded.secondary_resets_at, plan_type = excluded.plan_type, "
    "fetched_at = excluded.fetched_at, ok = excluded.ok, error = excluded.error"
)


@dataclass(frozen=True)
class Target:
    """An account the refresher keeps fresh."""

    user_id: int
    codex_home: Path


def snapshot_from_row(r: Any) -> Limits | None:
    """Return the limits stored in a `limit_snapshots` row (None: never read)."""
    if r["fetched_at"] is None:
        return None
    return Limits(
        r["primary_used"],
        r["primary_window_mins"],
        r["primary_resets_at"],
        r["secondary_used"],
        r["secondary_window_mins"],
        r["secondary_resets_at"],
        r["plan_type"],
        float(r["fetched_at"]),
        bool(r["ok"]),
        r["error"],
    )


class LimitCache:
    """In-memory limits per account id, with reads, pushes, a refresher and a persister."""

    def __init__(self, store: Store, engine: Engine, ttl_s: float) -> None:
        self._store = store
        self._engine = engine
        self.ttl_s = ttl_s
        self._entries: dict[int, Limits] = {}
        self._read_at: dict[int, float] = {}  # monotonic time of the last read or push
        self._inflight: dict[int, asyncio.Task[Limits | None]] = {}
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(REFRESH_CONCURRENCY)
        self.reads = 0  # app-server reads attempted (tests, metrics)
        self.on_change: Callable[[int], None] | None = None  # the pool drops its snapshot
        self.history: QuotaHistory | None = None  # keeps fresh readings over time

    # --- reading the cache (pure, synchronous) ---------------------------------------------
    def get(self, user_id: int) -> Limits | None:
        """Return the account's last known limits, or None when never read."""
        return self._entries.get(user_id)

    def snapshot(self) -> dict[int, Limits]:
        """Return the current map (read-only by convention; replaced, never mutated in place)."""
        return self._entries

    def forget(self, user_id: int) -> None:
        """Drop an account's cached limits (user deleted or unlinked)."""
        self._entries = {k: v for k, v in self._entries.items() if k != user_id}
        self._read_at.pop(user_id, None)
        self._changed(user_id)

    # --- writing ---------------------------------------------------------------------------
    def _put(self, user_id: int, limits: Limits) -> None:
        # Copy-on-write: a selection running over the old dict never sees a half update.
        self._entries = {**self._entries, user_id: limits}
        if self.history is not None:
            self.history.take(user_id, limits)
        self._dirty.add(user_id)
        self._wake.set()
        self._changed(user_id)

    def _changed(self, user_id: int) -> None:
        if self.on_change is not None:
            self.on_change(user_id)

    def on_push(self, account_key: str, snap: RateLimitSnapshot) -> None:
        """Take limits the app-server pushed after a turn (the engine's `on_rate_limits` hook)."""
        try:
            user_id = int(account_key)
        except ValueError:
            return
        self._read_at[user_id] = time.monotonic()
        self._put(user_id, Limits.from_snapshot(snap, time.time()))

    def due(self, user_id: int, now: float | None = None) -> bool:
        """Tell whether the account's limits are older than the TTL (or were never read)."""
        at = self._read_at.get(user_id)
        return at is None or (now or time.monotonic()) - at >= self.ttl_s

    async def refresh(self, target: Target, *, force: bool = False) -> Limits | None:
        """Read the account's limits unless fresh; concurrent callers share one read."""
        if not force and not self.due(target.user_id):
            return self._entries.get(target.user_id)
        return await asyncio.shield(self._start(target))

    def _start(self, target: Target) -> asyncio.Task[Limits | None]:
        """Return the account's read in flight, starting one if there is none."""
        task = self._inflight.get(target.user_id)
        if task is None:
            task = asyncio.create_task(self._read(target), name=f"limits-{target.user_id}")
            self._inflight[target.user_id] = task
            task.add_done_callback(lambda _t: self._inflight.pop(target.user_id, None))
        return task

    async def _read(self, target: Target) -> Limits | None:
        """Read with retries; on failure keep the last good values, marked stale."""
        error = "unknown error"
        async with self._sem:
            for attempt in range(READ_TRIES):
                self.reads += 1
                try:
                    snap = await self._engine.read_rate_limits(
                        str(target.user_id), target.codex_home
                    )
                except TurnError as exc:
                    error = exc.message
                except Exception as exc:  # a read must never take the refresher down
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    self._read_at[target.user_id] = time.monotonic()
                    # The engine merged the read over pushes; its view is the freshest.
                    merged = self._engine.latest_limits(str(target.user_id)) or snap
                    limits = Limits.from_snapshot(merged, time.time())
                    self._put(target.user_id, limits)
                    return limits
                if attempt < len(READ_BACKOFF_S):
                    await asyncio.sleep(READ_BACKOFF_S[attempt])
        _LOGGER.warning(
            "Reading the limits of account %s failed %s times: %s",
            target.user_id,
            READ_TRIES,
            error,
        )
        # Try again after the TTL, not at once: the refresher must not hammer a failing read.
        self._read_at[target.user_id] = time.monotonic()
        last = self._entries.get(target.user_id)
        if last is None:
            return None
        stale = replace(last, ok=False, error=error[:300])
        self._put(target.user_id, stale)
        return stale

    # --- persistence -----------------------------------------------------------------------
    async def load(self) -> None:
        """Load the persisted snapshots (they count as read at start-up: due at once)."""
        rows = await self._store.fetchall(f"SELECT user_id, {_COLUMNS} FROM limit_snapshots")
        entries: dict[int, Limits] = {}
        for r in rows:
            snapshot = snapshot_from_row(r)
            if snapshot is not None:
                entries[r["user_id"]] = snapshot
        self._entries = entries

    async def merge_stored(self) -> int:
        """Take the snapshots other nodes stored that are newer than ours (sharedState).

        A merged snapshot counts as a fresh read, so this node does not read that account's
        limits again while another node keeps them current; it is not written back.
        """
        rows = await self._store.fetchall(f"SELECT user_id, {_COLUMNS} FROM limit_snapshots")
        newer: dict[int, Limits] = {}
        for r in rows:
            mine = self._entries.get(r["user_id"])
            if r["fetched_at"] is None or (
                mine is not None and mine.fetched_at >= float(r["fetched_at"])
            ):
                continue
            snapshot = snapshot_from_row(r)
            if snapshot is not None:
                newer[r["user_id"]] = snapshot
        if newer:
            self._entries = {**self._entries, **newer}
            now = time.monotonic()
            for user_id, lim in newer.items():
                self._read_at[user_id] = now - max(0.0, time.time() - lim.fetched_at)
                self._changed(user_id)
        return len(newer)

    async def run_merger(self, every_s: float = MERGE_EVERY_S) -> None:
        """Merge other nodes' snapshots every `every_s` until cancelled (sharedState)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.merge_stored()
            except Exception as exc:  # the database away: next round
                _LOGGER.debug("Cannot merge stored limit snapshots: %s", exc)

    async def flush(self) -> None:
        """Write every changed snapshot to `limit_snapshots` in one transaction."""
        if self.history is not None:
            await self.history.write()
        if not self._dirty:
            return
        ids, self._dirty = self._dirty, set()
        rows = []
        for user_id in ids:
            lim = self._entries.get(user_id)
            if lim is None:
                continue
            rows.append(
                (
                    user_id,
                    lim.primary_used,
                    lim.primary_window_mins,
                    lim.primary_resets_at,
                    lim.secondary_used,
                    lim.secondary_window_mins,
                    lim.secondary_resets_at,
                    lim.plan_type,
                    lim.fetched_at,
                    int(lim.ok),
                    lim.error,
                )
            )
        if not rows:
            return
        # Only users that still exist: a snapshot of a just-deleted user is dropped.
        try:
            existing = {
                r["id"]
                for r in await self._store.fetchall(
                    f"SELECT id FROM users WHERE id IN ({','.join('?' * len(rows))})",
                    [r[0] for r in rows],
                )
            }
            await self._store.executemany(
                _UPSERT, [r for r in rows if r[0] in existing], bookkeeping=True
            )
        except BaseException as exc:
            self._dirty |= {r[0] for r in rows}  # written next time (or by close())
            if not isinstance(exc, Exception):
                raise  # cancelled: the persister is stopping
            _LOGGER.exception("Could not persist %s limit snapshots", len(rows))

    async def run_persister(self) -> None:
        """Write changed snapshots in batches, at most about once a second."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(1.0)

    async def run_refresher(self, targets: Callable[[], Awaitable[Iterable[Target]]]) -> None:
        """Keep every target's limits younger than the TTL, spreading reads with jitter."""
        tick = max(0.5, min(15.0, self.ttl_s / 4))
        while True:
            now = time.monotonic()
            try:
                current = list(await targets())
            except Exception:
                _LOGGER.exception("Listing the accounts to refresh failed")
                current = []
            for target in current:
                if target.user_id in self._inflight:
                    continue
                at = self._read_at.get(target.user_id)
                # Each account gets its own jittered due time so reads do not bunch up.
                if at is not None and now - at < self.ttl_s * (1 - JITTER * random.random()):  # noqa: S311
                    continue
                self._start(target)
            await asyncio.sleep(tick * (1 + JITTER * random.random()))  # noqa: S311

    async def close(self) -> None:
        """Cancel reads in flight and write what is left."""
        for task in list(self._inflight.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self.flush()
