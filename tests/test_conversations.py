"""The conversation registry on its own: digests, claiming, bounds, expiry, response ids."""

from __future__ import annotations

import asyncio
import time

from codexpool.conversations import Conversations, ThreadRef, extend, prefix_digests


def _msg(role: str, text: str) -> dict[str, object]:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


ITEMS = (_msg("user", "a"), _msg("assistant", "b"), _msg("user", "c"))


def test_digests_depend_on_scope_instructions_tools_and_every_item() -> None:
    base = prefix_digests("key:1", "Be brief.", (), ITEMS)
    assert len(base) == 4 and len(set(base)) == 4
    assert extend(base[1], ITEMS[1:]) == base[3]
    assert prefix_digests("key:2", "Be brief.", (), ITEMS)[3] != base[3]
    assert prefix_digests("key:1", "Be long.", (), ITEMS)[3] != base[3]
    assert prefix_digests("key:1", "Be brief.", ({"name": "f"},), ITEMS)[3] != base[3]
    changed = (ITEMS[0], _msg("assistant", "B"), ITEMS[2])
    assert prefix_digests("key:1", "Be brief.", (), changed)[1:] != base[1:]
    assert prefix_digests("key:1", "Be brief.", (), changed)[1] == base[1]


async def test_claim_takes_the_longest_prefix_once_and_lru_evicts() -> None:
    released: list[tuple[str, str]] = []

    async def release(account_key: str, thread_id: str) -> None:
        released.append((account_key, thread_id))

    conv = Conversations(release, idle_s=60, max_per_account=2)
    d = prefix_digests("key:1", None, (), ITEMS)
    await conv.remember(d[1], ThreadRef(7, "7", "t-short"))
    await conv.remember(d[2], ThreadRef(7, "7", "t-long"))
    assert await conv.claim(d) == (2, ThreadRef(7, "7", "t-long"))
    assert await conv.claim(d[:3]) == (1, ThreadRef(7, "7", "t-short"))
    assert await conv.claim(d) is None  # taken: a second request starts a new thread
    for n in range(3):
        await conv.remember(bytes([n]) * 32, ThreadRef(7, "7", f"t{n}"))
    assert conv.count(7) == 2
    await asyncio.sleep(0)
    assert released == [("7", "t0")]  # the least recently used, released on its app-server


async def test_idle_conversations_and_responses_expire() -> None:
    released: list[str] = []

    async def release(account_key: str, thread_id: str) -> None:
        released.append(thread_id)

    conv = Conversations(release, idle_s=10, max_per_account=5)
    await conv.remember(b"x" * 32, ThreadRef(1, "1", "old"))
    await conv.remember_response("resp_1", "key:1", ITEMS)
    assert await conv.response("resp_1", "key:2") is None  # another key never sees it
    record = await conv.response("resp_1", "key:1")
    assert record is not None and record.items == ITEMS
    assert conv.reap(time.monotonic() + 11) == 1
    await asyncio.sleep(0)
    assert released == ["old"] and len(conv) == 0
    assert await conv.response("resp_1", "key:1") is None
