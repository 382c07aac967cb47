"""Turns parked on client function calls, waiting for the client's `role: "tool"` messages.

When the model calls a client function, the answer goes back with `finish_reason:
"tool_calls"` while the Codex turn stays open (its `item/tool/call` requests pending). The
follow-up request that carries results for exactly those call ids resumes the same turn, on
the same account. A parked turn that nobody resumes is closed after its TTL (which interrupts
it on the app-server and frees the account's slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .codex.engine import tool_result
from .codex.events import ToolCalls
from .keys import SETTINGS
from .pool import Account

_LOGGER = logging.getLogger(__name__)


@dataclass
class HeldTurn:
    """One parked turn."""

    events: AsyncGenerator[Any, None]
    calls: ToolCalls
    account: Account
    key_id: int | None  # only the key (or portal session: None) that made the call may resume
    expires_at: float
    thread: Any = None  # the conversation's thread (conversations.ThreadRef), kept on resume

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
    """Registry of parked turns by call id, with expiry."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._by_call: dict[str, HeldTurn] = {}

    def __len__(self) -> int:
        return len({id(h) for h in self._by_call.values()})

    def park(
        self,
        events: AsyncGenerator[Any, None],
        calls: ToolCalls,
        account: Account,
        key_id: int | None,
        thread: Any = None,
    ) -> None:
        """Keep a turn open until its tool results arrive or the TTL ends."""
        held = HeldTurn(events, calls, account, key_id, time.monotonic() + self.ttl_s, thread)
        for call_id in held.call_ids():
            self._by_call[call_id] = held

    def take(self, call_ids: list[str], key_id: int | None) -> HeldTurn | None:
        """Return (and forget) the parked turn these results answer, if it is still open."""
        held = next((self._by_call[c] for c in call_ids if c in self._by_call), None)
        if held is None or held.expires_at < time.monotonic() or held.key_id != key_id:
            return None
        for call_id in held.call_ids():
            self._by_call.pop(call_id, None)
        return held

    async def reap(self) -> None:
        """Close parked turns whose TTL ended (interrupting them on the app-server)."""
        now = time.monotonic()
        expired = {id(h): h for h in self._by_call.values() if h.expires_at < now}
        for held in expired.values():
            for call_id in held.call_ids():
                self._by_call.pop(call_id, None)
            _LOGGER.info("A parked tool-call turn of account %s expired", held.account.username)
            with contextlib.suppress(Exception):
                await held.events.aclose()

    async def close(self) -> None:
        """Close every parked turn (shutdown)."""
        held = {id(h): h for h in self._by_call.values()}
        self._by_call.clear()
        for h in held.values():
            with contextlib.suppress(Exception):
                await h.events.aclose()


HELD_TURNS = web.AppKey("held_turns", HeldTurns)


async def _held_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = HeldTurns(float(app[SETTINGS].tool_turn_ttl_seconds))
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
