"""Per-key limits held in the database, so a cap holds across every node on it (sharedState).

The same admission as key_limits.KeyQuotas, with the counts in two tables instead of memory:
`key_day_use` (an owner's requests and tokens per UTC day) and `key_slots` (one row per
request running now). Admission is one transaction: an UPDATE counts the request in on the
owner's day row, which locks it (a row lock on PostgreSQL; SQLite's IMMEDIATE transaction
locks the file), and returns the counts before it; the live slots are counted, the caps are
checked (a refusal rolls the count back), then a slot row goes in. Two nodes admitting
at once are serialized and never both pass a cap.

A slot names the node holding it and expires unless that node renews it (every third of
`slotLeaseSeconds`): a node killed mid-request does not hold its slots forever, and expired
slots are ignored by admission and deleted by any node's renewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from .errors import ApiError
from .key_limits import (
    CONCURRENCY_EXCEEDED,
    SECONDS_PER_DAY,
    KeyLimits,
    KeyQuotas,
    Owner,
    OwnerUse,
    Ticket,
    cap_error,
    check_model,
    load_day_use,
    utc_day,
)
from .store import Connection, Store

_LOGGER = logging.getLogger(__name__)

# Counts the request in and locks the owner's day row (a row lock on PostgreSQL) in one
# statement, returning the counts before it; a refusal rolls it back. The running slots are
# counted by a statement of their own, after the lock: on PostgreSQL a statement that waited
# for the lock still reads with the snapshot it started with, a new one sees the slots that
# the transaction holding the lock inserted.
_COUNT_IN = (
    "UPDATE key_day_use SET requests = requests + 1 WHERE owner = ? AND day = ? "
    "RETURNING requests - 1, tokens"
)
_IN_FLIGHT = "SELECT COUNT(*) FROM key_slots WHERE owner = ? AND expires_at > ?"
_SEED_DAY = (
    "INSERT INTO key_day_use (owner, day, requests, tokens) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (owner, day) DO NOTHING"
)
_TAKE_SLOT = "INSERT INTO key_slots (slot, owner, node_id, expires_at) VALUES (?, ?, ?, ?)"
_RENEW_CHUNK = 500
RELEASE_GRACE_S = 0.2  # how long a concurrency refusal waits for slots being released
RELEASE_RETRIES = 4


def owner_key(owner: Owner) -> str:
    """Return the stored name of a key owner: 'user:<id>' or 'master'."""
    return "master" if owner[0] == "master" else f"user:{owner[1]}"


def owner_from_key(key: str) -> Owner:
    """Return the owner a stored name stands for."""
    return ("master", None) if key == "master" else ("user", int(key.split(":", 1)[1]))


async def _one(db: Connection, sql: str, params: Sequence[Any]) -> Any:
    return await db.fetchone(sql, params)


class SharedKeyQuotas(KeyQuotas):
    """Admits requests against their key's limits with the counts in the database (the
    in-memory KeyQuotas' interface, so the request path does not know which it has)."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        lease_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(store, clock)
        self.node_id = node_id
        self.lease_s = lease_s
        self._held: set[str] = set()  # this node's slots still running
        self._tasks: set[asyncio.Task[None]] = set()

    async def admit(
        self, owner: Owner, limits: KeyLimits, model_names: Sequence[str] = ()
    ) -> Ticket:
        """Count a request in, or raise the 403/429 that names the cap it would break.

        A slot is released by a write that follows the answer's last byte, so a client that
        sends its next request the moment the previous one ended (on this node or another)
        may find that slot still held: a request refused for concurrency only is checked
        again a few times over RELEASE_GRACE_S before the 429.
        """
        check_model(limits, model_names)
        for attempt in range(RELEASE_RETRIES + 1):
            try:
                return await self._admit(owner, limits)
            except ApiError as exc:
                if exc.code != CONCURRENCY_EXCEEDED or attempt == RELEASE_RETRIES:
                    raise
                await asyncio.sleep(RELEASE_GRACE_S / RELEASE_RETRIES)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _admit(self, owner: Owner, limits: KeyLimits) -> Ticket:
        now = self._clock()
        today = utc_day(now)
        key = owner_key(owner)
        slot = secrets.token_hex(12)
        seed: OwnerUse | None = None
        while True:
            async with self._store.transaction(bookkeeping=True) as db:
                row = await _one(db, _COUNT_IN, (key, today))
                if row is None and seed is not None:
                    await db.execute(_SEED_DAY, (key, today, seed.requests, seed.tokens))
                    row = await _one(db, _COUNT_IN, (key, today))
                if row is not None:
                    in_flight = int((await _one(db, _IN_FLIGHT, (key, now)))[0])
                    refused = cap_error(limits, int(row[0]), int(row[1]), in_flight, today, now)
                    if refused is not None:
                        raise refused  # rolls the count back
                    await db.execute(_TAKE_SLOT, (slot, key, self.node_id, now + self.lease_s))
                    self._held.add(slot)
                    return Ticket(self, owner, today, slot)
            # First request of this owner today on any node: start from the request log (the
            # count before sharedState was on, or before midnight's row existed), read outside
            # the write transaction.
            seed = (await load_day_use(self._store, today, owner)).get(owner) or OwnerUse(today)

    def _finish(self, owner: Owner, day: int, tokens: int, slot: str | None) -> None:
        if slot is None:
            return
        self._held.discard(slot)
        task = asyncio.get_running_loop().create_task(
            self._release(owner_key(owner), day, max(0, tokens), slot), name="key-slot-release"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, key: str, day: int, tokens: int, slot: str) -> None:
        # Two statements on their own (no transaction around them: one round trip each); a
        # lost second one costs a request's tokens, never a slot.
        try:
            await self._store.execute(
                "DELETE FROM key_slots WHERE slot = ?", (slot,), bookkeeping=True
            )
            if tokens:
                await self._store.execute(
                    "UPDATE key_day_use SET tokens = tokens + ? WHERE owner = ? AND day = ?",
                    (tokens, key, day),
                    bookkeeping=True,
                )
        except Exception as exc:  # the slot then expires by itself; the tokens are lost
            _LOGGER.warning("Cannot release key slot %s: %s", slot, exc)

    async def usage(self, owners: Iterable[Owner]) -> dict[Owner, OwnerUse]:
        """Return today's use of each owner, as every node counts it."""
        now = self._clock()
        today = utc_day(now)
        wanted = list(owners)
        days = {
            r["owner"]: (int(r["requests"]), int(r["tokens"]))
            for r in await self._store.fetchall(
                "SELECT owner, requests, tokens FROM key_day_use WHERE day = ?", (today,)
            )
        }
        flights = {
            r["owner"]: int(r["n"])
            for r in await self._store.fetchall(
                "SELECT owner, COUNT(*) AS n FROM key_slots WHERE expires_at > ? GROUP BY owner",
                (now,),
            )
        }
        missing = [o for o in wanted if owner_key(o) not in days]
        loaded = await load_day_use(self._store, today, None) if missing else {}
        out: dict[Owner, OwnerUse] = {}
        for owner in wanted:
            key = owner_key(owner)
            if key in days:
                use = OwnerUse(today, *days[key])
            else:
                use = loaded.get(owner) or OwnerUse(today)
            use.in_flight = flights.get(key, 0)
            out[owner] = use
        return out

    async def usage_of(self, owner: Owner) -> OwnerUse:
        """Return today's use of one owner."""
        return (await self.usage([owner]))[owner]

    def forget(self, owner: Owner) -> None:
        """Drop an owner's counters (its user was deleted)."""
        task = asyncio.get_running_loop().create_task(
            self._forget(owner_key(owner)), name="key-use-forget"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget(self, key: str) -> None:
        await self._store.execute(
            "DELETE FROM key_day_use WHERE owner = ?", (key,), bookkeeping=True
        )

    # --- lifetime ----------------------------------------------------------------------------
    async def renew(self) -> None:
        """Extend this node's running slots, and delete expired slots and old day rows."""
        now = self._clock()
        held = list(self._held)
        async with self._store.transaction(bookkeeping=True) as db:
            for i in range(0, len(held), _RENEW_CHUNK):
                chunk = held[i : i + _RENEW_CHUNK]
                marks = ", ".join("?" * len(chunk))
                await db.execute(
                    f"UPDATE key_slots SET expires_at = ? WHERE slot IN ({marks})",
                    (now + self.lease_s, *chunk),
                )
            await db.execute("DELETE FROM key_slots WHERE expires_at <= ?", (now,))
            await db.execute("DELETE FROM key_day_use WHERE day < ?", (utc_day(now) - 2,))

    async def run_renewer(self) -> None:
        """Renew every third of the lease until cancelled; a failed round is retried."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew()
            except Exception as exc:
                _LOGGER.warning("Cannot renew key slots: %s", exc)

    async def start(self) -> None:
        """Drop the slots a previous process of this node left behind (it is gone)."""
        await self._store.execute(
            "DELETE FROM key_slots WHERE node_id = ?", (self.node_id,), bookkeeping=True
        )

    async def close(self) -> None:
        """Wait for the releases under way (shutdown)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def running(quotas: SharedKeyQuotas) -> AsyncIterator[None]:
    """Start the quotas and their renewer; stop both on exit."""
    await quotas.start()
    task = asyncio.create_task(quotas.run_renewer(), name="key-slot-renewer")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await quotas.close()


__all__ = ["SECONDS_PER_DAY", "SharedKeyQuotas", "owner_from_key", "owner_key", "running"]
