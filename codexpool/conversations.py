"""Conversation affinity: which account and thread continue a conversation.

A client sends the whole history with every chat request. After a request is answered the
gateway remembers a digest of (key, instructions, tools, every item, the answer) mapped to the
account and thread that produced the answer. A later request whose items start with a
remembered conversation continues that thread with only its new items, so the upstream
`prompt_cache_key` (the thread id) stays the same and the backend's prompt cache follows the
conversation. A remembered conversation is taken out while its turn runs: a second request
continuing the same conversation, or a regenerated answer from an older point, starts a new
thread with its history injected instead (never two turns on one thread).

Bounded per account (least recently used evicted) and by idle time; an evicted thread is
released on its app-server. Responses API answers are also kept by response id, with their
items, so `previous_response_id` can continue them.

Everything lives in this process's memory behind the narrow `Conversations` interface; with
the setting sharedState, `SharedConversations` (shared_conversations.py) keeps the same in the
database so a conversation continues from any node. The interface is async for that reason; the
in-memory methods never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

_LOGGER = logging.getLogger(__name__)

Items = tuple[dict[str, Any], ...]
Release = Callable[[str, str], Coroutine[Any, Any, None]]  # (account key, thread id)


# One encoder for every digest: `json.dumps` with options builds a new JSONEncoder per call
# (a third of its time for one message item). Same output. Not orjson: it writes NaN (which
# `json.loads` accepts in a body) as null, so two different tool schemas could share a digest.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def prefix_digests(
    scope: str, instructions: str | None, tools: Sequence[dict[str, Any]], items: Items
) -> list[bytes]:
    """Return the digest of every prefix of `items` (index k: the first k items).

    Each digest chains the previous one, so two conversations share a digest exactly when
    they share the scope (who asks), instructions, tools and those items.
    """
    digest = hashlib.sha256(_canonical([scope, instructions, list(tools)])).digest()
    out = [digest]
    for item in items:
        digest = hashlib.sha256(digest + _canonical(item)).digest()
        out.append(digest)
    return out


def extend(digest: bytes, items: Items) -> bytes:
    """Return the digest of a conversation continued by `items`."""
    for item in items:
        digest = hashlib.sha256(digest + _canonical(item)).digest()
    return digest


@dataclass(frozen=True)
class ThreadRef:
    """A conversation's thread: the account and app-server thread holding its history."""

    account_id: int  # the account's user id (pool stickiness)
    account_key: str  # the engine's account key
    thread_id: str


@dataclass
class _Entry:
    digest: bytes
    ref: ThreadRef
    used_at: float


@dataclass
class ResponseRecord:
    """A Responses API answer `previous_response_id` may name."""

    scope: str
    items: Items  # the whole conversation up to and including the answer
    used_at: float


class Conversations:
    """Remembered conversations (digest -> thread) and Responses answers (id -> items)."""

    def __init__(
        self,
        release: Release,
        idle_s: float = 1800.0,
        max_per_account: int = 200,
        max_responses: int | None = None,
    ) -> None:
        self._release = release
        self.idle_s = idle_s
        self.max_per_account = max_per_account
        self.max_responses = max_responses or max(1000, 10 * max_per_account)
        self._by_digest: dict[bytes, _Entry] = {}
        self._by_account: dict[int, OrderedDict[bytes, _Entry]] = {}
        self._responses: OrderedDict[str, ResponseRecord] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._by_digest)

    def count(self, account_id: int) -> int:
        """Return how many conversations one account holds a thread for."""
        return len(self._by_account.get(account_id, ()))

    async def claim(self, digests: Sequence[bytes]) -> tuple[int, ThreadRef] | None:
        """Take the longest remembered prefix among `digests` (index k: the first k items).

        Returns (k, its thread) and forgets it: the caller runs the next turn on that thread
        and remembers it again under the new digest, or discards it.
        """
        now = time.monotonic()
        for k in range(len(digests) - 1, 0, -1):
            entry = self._by_digest.get(digests[k])
            if entry is None:
                continue
            self._forget(entry)
            if now - entry.used_at > self.idle_s:
                self.discard(entry.ref)
                return None
            return k, entry.ref
        return None

    async def remember(self, digest: bytes, ref: ThreadRef) -> None:
        """Remember that the conversation with this digest continues on `ref`."""
        old = self._by_digest.get(digest)
        if old is not None:  # the same conversation answered twice: keep the newer thread
            self._forget(old)
            if old.ref != ref:
                self.discard(old.ref)
        entry = _Entry(digest, ref, time.monotonic())
        self._by_digest[digest] = entry
        lru = self._by_account.setdefault(ref.account_id, OrderedDict())
        lru[digest] = entry
        while len(lru) > self.max_per_account:
            _, oldest = lru.popitem(last=False)
            self._by_digest.pop(oldest.digest, None)
            self.discard(oldest.ref)

    def discard(self, ref: ThreadRef) -> None:
        """Release a thread no conversation will continue (evicted, failed or left behind)."""
        task = asyncio.get_running_loop().create_task(
            self._release(ref.account_key, ref.thread_id), name="conversation-release"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, entry: _Entry) -> None:
        self._by_digest.pop(entry.digest, None)
        lru = self._by_account.get(entry.ref.account_id)
        if lru is not None:
            lru.pop(entry.digest, None)
            if not lru:
                del self._by_account[entry.ref.account_id]

    # --- Responses API answers -------------------------------------------------------------
    async def remember_response(self, response_id: str, scope: str, items: Items) -> None:
        """Keep an answered Responses conversation for `previous_response_id`."""
        self._responses[response_id] = ResponseRecord(scope, items, time.monotonic())
        while len(self._responses) > self.max_responses:
            self._responses.popitem(last=False)

    async def response(self, response_id: str, scope: str) -> ResponseRecord | None:
        """Return the conversation a response ended, if it is known to this scope and fresh."""
        record = self._responses.get(response_id)
        if record is None or record.scope != scope:
            return None
        now = time.monotonic()
        if now - record.used_at > self.idle_s:
            del self._responses[response_id]
            return None
        record.used_at = now
        self._responses.move_to_end(response_id)
        return record

    # --- expiry ----------------------------------------------------------------------------
    def reap(self, now: float | None = None) -> int:
        """Release every conversation idle longer than `idle_s`; return how many."""
        now = time.monotonic() if now is None else now
        idle = [e for e in self._by_digest.values() if now - e.used_at > self.idle_s]
        for entry in idle:
            self._forget(entry)
            self.discard(entry.ref)
        for rid in [r for r, rec in self._responses.items() if now - rec.used_at > self.idle_s]:
            del self._responses[rid]
        if idle:
            _LOGGER.info("Released %s idle conversation threads", len(idle))
        return len(idle)

    def attach(self, store: Any, node: str) -> None:
        """Give the registry its database and node name (used by the shared registry only)."""

    async def reap_async(self) -> int:
        """Run `reap` (the shared registry's works in the database)."""
        return self.reap()

    async def close(self) -> None:
        """Forget everything and wait for the releases under way (shutdown)."""
        self._by_digest.clear()
        self._by_account.clear()
        self._responses.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def setup(app: web.Application) -> None:
    """Own the registry's lifetime and its idle reaper (closed before the engine)."""
    from .app_keys import CONVERSATIONS, ENGINE, SETTINGS, STORE

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        factory: type[Conversations] = Conversations
        if settings.shares_state:
            from .shared_conversations import SharedConversations

            factory = SharedConversations
        registry = factory(
            lambda account_key, thread_id: app[ENGINE].release_thread(account_key, thread_id),
            float(settings.conversation_idle_seconds),
            int(settings.max_conversations_per_account),
        )
        registry.attach(app[STORE], settings.node_name)
        app[CONVERSATIONS] = registry

        async def reaper() -> None:
            while True:
                await asyncio.sleep(min(60.0, max(0.5, registry.idle_s / 4)))
                try:
                    await registry.reap_async()
                except Exception as exc:  # the database away: next round
                    _LOGGER.warning("Reaping conversations failed: %s", exc)

        task = asyncio.create_task(reaper(), name="conversation-reaper")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await registry.close()

    app.cleanup_ctx.append(ctx)
