"""Shared-state benchmark: what a request's per-key admission and conversation bookkeeping cost
in memory (one node, sharedState off) and in the database (sharedState on).

Times, one after another on one store: `admit` + `finish` of a key with a concurrency cap and a
daily cap (the request path of every limited key), and `claim` + `remember` of a conversation
(the request path of every chat turn), in memory and on the SQLite file; with `--pg URL` also on
PostgreSQL. Prints microseconds per operation (median of rounds). Not a test: it prints figures.

    .venv/bin/python bench/shared_state.py [--n 500] [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from codexpool import users  # noqa: E402
from codexpool.conversations import Conversations, ThreadRef, prefix_digests  # noqa: E402
from codexpool.key_limits import KeyLimits, KeyQuotas  # noqa: E402
from codexpool.shared_conversations import SharedConversations  # noqa: E402
from codexpool.shared_quotas import SharedKeyQuotas  # noqa: E402
from codexpool.store import SqliteStore, Store, postgres_store  # noqa: E402

LIMITS = KeyLimits(requests_per_day=10**9, concurrent_requests=4)
ROUNDS = 5


async def _release(account_key: str, thread_id: str) -> None:
    return None


async def time_quotas(quotas: KeyQuotas, n: int) -> float:
    """Return microseconds per admit + finish (the finish's write awaited in the shared case)."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(n):
            (await quotas.admit(("user", 1), LIMITS)).finish(10)
        if isinstance(quotas, SharedKeyQuotas):
            await quotas.close()  # the releases run as tasks: count them in
        rounds.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(rounds)


async def time_conversations(conv: Conversations, n: int) -> float:
    """Return microseconds per claim + remember of a conversation one turn longer each time."""
    rounds = []
    for r in range(ROUNDS):
        items = tuple({"type": "message", "role": "user", "content": f"{r}-{i}"} for i in range(n))
        digests = prefix_digests(f"key:{r}", None, [], items)
        ref = ThreadRef(1, "1", f"t{r}")
        await conv.remember(digests[1], ref)
        started = time.perf_counter()
        for k in range(2, n):
            await conv.claim(digests[: k + 1])
            await conv.remember(digests[k], ref)
        rounds.append((time.perf_counter() - started) / (n - 2) * 1e6)
    return statistics.median(rounds)


async def one_backend(name: str, store: Store, n: int) -> None:
    await store.open()
    try:
        if await store.fetchone("SELECT id FROM users WHERE id = 1") is None:
            await users.create_user(store, "bench", None)
        memory_q = await time_quotas(KeyQuotas(store), n)
        shared_q = await time_quotas(SharedKeyQuotas(store, "bench:1", 30), n)
        memory_c = await time_conversations(Conversations(_release, max_per_account=10**6), n)
        shared = SharedConversations(_release, max_per_account=10**6)
        shared.attach(store, "bench:1")
        shared_c = await time_conversations(shared, n)
    finally:
        await store.close()
    print(f"{name}: key admission (admit + finish)   in memory {memory_q:8.1f} us"
          f"   shared {shared_q:8.1f} us")  # fmt: skip
    print(f"{name}: conversation (claim + remember) in memory {memory_c:8.1f} us"
          f"   shared {shared_c:8.1f} us")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--pg", default="", help="a PostgreSQL URL (an empty database)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await one_backend("sqlite", SqliteStore(Path(tmp) / "bench.sqlite3"), args.n)
    if args.pg:
        await one_backend("postgresql", postgres_store(args.pg), args.n)


if __name__ == "__main__":
    asyncio.run(main())
