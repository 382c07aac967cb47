"""Turns parked on client function calls, waiting for the client's `role: "tool"` messages.

When the model calls a client function, the answer goes back with `finish_reason:
"tool_calls"` while the Codex turn stays open (its `item/tool/call` requests pending). The
follow-up request that carries results for exactly those call ids resumes the same turn, on
the same account. A parked turn that nobody resumes is closed after its TTL (which interrupts
it on the app-server and frees the account's slot).

A parked turn is live work: its thread stays in the app-server's memory (400 unanswered turns
grew one account to 5 app-servers and 1.95 GiB). So until it is answered or closed it keeps
its account turn slot and its key's place in `concurrentRequests`, and a key has at most
`maxParkedTurnsPerKey`. It never blocks new work, though: when a key's cap, the account's
slots or the per-key bound are full, the oldest parked turn is closed to make room (an
abandoned tool loop must not lock its key or account out). Closing is safe because a late
answer to a closed turn runs as a fresh turn with the conversation injected as history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..app_keys import HELD_TURNS, REFUSALS, SETTINGS
from ..codex.engine import Engine, tool_result
from ..codex.events import Event, ToolCalls
from ..errors import ApiError
from ..key_limits import CONCURRENCY_EXCEEDED, KeyLimits, KeyQuotas, Owner, Ticket
from ..selection import Account

_LOGGER = logging.getLogger(__name__)


@dataclass
class HeldTurn:
    """One parked turn."""

    events: AsyncGenerator[Event, None]
    calls: ToolCalls
    account: Account
    key_id: int | None  # only the key (or portal session: None) that made the call may resume
    expires_at: float
    thread: Any = None  # the conversation's thread (conversations.ThreadRef), kept on resume
    owner: Owner | None = None  # the key slot whose concurrency it holds
    ticket: Ticket | None = None  # its place in the key's concurrentRequests
    tokens: int = 0  # counted against the key when the ticket is finished

    def release_ticket(self) -> None:
        """Give back the key's concurrency place (resumed: the new request takes it over)."""
        if self.ticket is not None:
            self.ticket.finish(self.tokens)
            self.ticket = None

    def call_ids(self) -> set[str]:
        """Return the ids of the calls waiting for results."""
        return {c.call_id for c in self.calls.calls}

    def resolve(self, results: dict[str, str]) -> None:
        """Hand every pending call its result (a missing one gets a failure note)."""
        for call in self.calls.calls:
            if call.reply.done():
                continue
            if call.call_id in results:
                call.reply.set_result(tool_result(results[call.call_id]))
            else:
                call.reply.set_result(tool_result("No result was provided.", False))


class HeldTurns:
    """Registry of parked turns by call id, with expiry and per-key bound."""

    def __init__(
        self, ttl_s: float, max_per_key: int = 8, refusals: Counter[str] | None = None
    ) -> None:
        self.ttl_s = ttl_s
        self.max_per_key = max_per_key
        self._by_call: dict[str, HeldTurn] = {}
        self._parked: list[HeldTurn] = []  # oldest first
        self._refusals = refusals if refusals is not None else Counter()

    def __len__(self) -> int:
        return len(self._parked)

    async def park(
        self,
        events: AsyncGenerator[Event, None],
        calls: ToolCalls,
        account: Account,
        key_id: int | None,
        thread: Any = None,
        *,
        owner: Owner | None = None,
        ticket: Ticket | None = None,
        tokens: int = 0,
    ) -> None:
        """Keep a turn open until its tool results arrive or the TTL ends; past the key's
        `max_per_key`, its oldest parked turn is closed."""
        held = HeldTurn(
            events,
            calls,
            account,
            key_id,
            time.monotonic() + self.ttl_s,
            thread=thread,
            owner=owner,
            ticket=ticket,
            tokens=tokens,
        )
        for call_id in held.call_ids():
            self._by_call[call_id] = held
        self._parked.append(held)
        mine = [h for h in self._parked if h.key_id == key_id and h.owner == owner]
        for old in mine[: max(0, len(mine) - self.max_per_key)]:
            await self._close(old, "parked_turn_over_key_bound")

    def take(self, call_ids: list[str], key_id: int | None) -> HeldTurn | None:
        """Return (and forget) the parked turn these results answer, if it is still open.

        The caller owns it from then on: it resolves its calls, and must close its events
        and release its ticket.
        """
        held = next((self._by_call[c] for c in call_ids if c in self._by_call), None)
        if held is None or held.expires_at < time.monotonic() or held.key_id != key_id:
            return None
        self._forget(held)
        return held

    async def admit(
        self, quotas: KeyQuotas, owner: Owner, limits: KeyLimits, model_names: Sequence[str]
    ) -> Ticket:
        """Admit a request under its key's limits; when the key's parked turns are what
        fills its `concurrentRequests`, close the oldest of them instead of refusing."""
        while True:
            try:
                return await quotas.admit(owner, limits, model_names)
            except ApiError as exc:
                if exc.code != CONCURRENCY_EXCEEDED:
                    raise
                oldest = next((h for h in self._parked if h.owner == owner), None)
                if oldest is None:
                    raise
                await self._close(oldest, "parked_turn_over_key_concurrency")

    async def make_room(self, engine: Engine, account: Account) -> None:
        """Close the account's oldest parked turns while they fill all its turn slots."""
        while not engine.has_free_slot(account.key):
            oldest = next((h for h in self._parked if h.account.key == account.key), None)
            if oldest is None:
                return  # live turns fill it: the new turn waits in line as usual
            await self._close(oldest, "parked_turn_over_account_slots")

    async def reap(self) -> None:
        """Close parked turns whose TTL ended (interrupting them on the app-server)."""
        now = time.monotonic()
        for held in [h for h in self._parked if h.expires_at < now]:
            _LOGGER.info("A parked tool-call turn of account %s expired", held.account.username)
            await self._close(held)

    async def close(self) -> None:
        """Close every parked turn (shutdown)."""
        for held in list(self._parked):
            await self._close(held)

    def _forget(self, held: HeldTurn) -> None:
        for call_id in held.call_ids():
            if self._by_call.get(call_id) is held:
                del self._by_call[call_id]
        with contextlib.suppress(ValueError):
            self._parked.remove(held)

    async def _close(self, held: HeldTurn, reason: str | None = None) -> None:
        """Forget a parked turn, give back its key place and interrupt it (frees its slot)."""
        self._forget(held)
        held.release_ticket()
        if reason is not None:
            self._refusals[reason] += 1
            _LOGGER.info(
                "Closed the oldest parked tool-call turn of account %s (%s)",
                held.account.username,
                reason,
            )
        with contextlib.suppress(Exception):
            await held.events.aclose()


async def _held_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    registry = HeldTurns(
        float(settings.tool_turn_ttl_seconds), settings.max_parked_turns_per_key, app[REFUSALS]
    )
    app[HELD_TURNS] = registry

    async def reaper() -> None:
        while True:
            await asyncio.sleep(min(30.0, max(1.0, registry.ttl_s / 4)))
            await registry.reap()

    task = asyncio.create_task(reaper(), name="tool-turn-reaper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await registry.close()


def setup(app: web.Application) -> None:
    """Own the registry's lifetime (after the engine's, so it closes first)."""
    app.cleanup_ctx.append(_held_ctx)
