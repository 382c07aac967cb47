"""Pool benchmark: cost of one master-key selection with 1,000 accounts, and master-key
throughput through the real server against the instant fake backend.

Part 1 builds a Pool over 1,000 in-memory candidates (limits as pushed by app-servers, some
exhausted, some cooling down) and times `Pool.select()` (the hot path of every master-key
request: cached eligibility view + round-robin by id) and `build_view()` (the full
eligibility pass, run only when limits, cooldowns or the index change).

Part 2 starts `python -m codexpool serve` with N linked accounts and a master key, then sends
non-streamed master-key chat completions from C concurrent clients for a few seconds and
prints requests/s plus how evenly the accounts served. Not a test: it prints figures.

    .venv/bin/python bench/pool.py [--accounts 3] [--concurrency 16] [--seconds 8] [--fake-codex]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from codexpool import linking, users  # noqa: E402
from codexpool.account_limits import LimitCache  # noqa: E402
from codexpool.cli import new_event_loop  # noqa: E402
from codexpool.codex.engine import Engine, EngineConfig  # noqa: E402
from codexpool.codex.events import RateLimitSnapshot, RateLimitWindow  # noqa: E402
from codexpool.config import find_codex_bin, load_settings  # noqa: E402
from codexpool.pool import Pool, _Index  # noqa: E402
from codexpool.security import KeyCipher  # noqa: E402
from codexpool.selection import Candidate, Cooldown, build_view  # noqa: E402
from codexpool.store import SqliteStore  # noqa: E402
from codexpool.testing.fake_backend import (  # noqa: E402
    FakeBackend,
    codex_overrides,
    make_auth_json,
)
from tests.conftest import LiveServer, write_settings  # noqa: E402

FAKE_CODEX = str(REPO / "codexpool" / "testing" / "fake_codex.py")


def selection_bench(n: int, work: Path) -> None:
    """Time select() and build_view() over n accounts held in memory."""
    settings = load_settings(write_settings(work / "sel"), env={})
    store = SqliteStore(settings.db_path)  # never opened: selection must not need it
    engine = Engine(EngineConfig(codex_bin="codex"))  # never started
    limits = LimitCache(store, engine, ttl_s=60)
    pool = Pool(settings, store, limits)
    now = time.time()
    cands = tuple(
        Candidate(i, f"user{i}", Path(f"/homes/{i}"), linked=True, opt_in=i % 10 != 0)
        for i in range(1, n + 1)
    )
    pool._index = _Index(cands, {c.user_id: c for c in cands}, time.monotonic())
    for c in cands:
        used = 100.0 if c.user_id % 7 == 0 else float(c.user_id % 90)
        limits.on_push(
            str(c.user_id),
            RateLimitSnapshot(
                RateLimitWindow(used, 300, int(now) + 3600),
                RateLimitWindow(5.0, 10080, int(now) + 86_400),
            ),
        )
    for uid in range(3, n, 50):
        pool.cooldowns[uid] = Cooldown(now + 600, "usage_limit")
    pool._view = None
    eligible = len(pool.view().eligible)

    rounds = 200_000
    t0 = time.perf_counter()
    for _ in range(rounds):
        pool.select()
    per_select = (time.perf_counter() - t0) / rounds * 1e6

    snap = limits.snapshot()
    builds = 200
    t0 = time.perf_counter()
    for _ in range(builds):
        build_view(cands, snap, pool.cooldowns, now)
    per_build = (time.perf_counter() - t0) / builds * 1e6

    # Worst case: every selection follows a change (a push after every turn).
    t0 = time.perf_counter()
    for _ in range(builds):
        pool._view = None
        pool.select()
    per_cold = (time.perf_counter() - t0) / builds * 1e6
    # Typical: a push after every turn that leaves the account eligible, then a selection.
    busy = limits.snapshot()[2]
    push = RateLimitSnapshot(
        RateLimitWindow(busy.primary_used or 0.0, 300, int(now) + 3600),
        RateLimitWindow(5.0, 10080, int(now) + 86_400),
    )
    t0 = time.perf_counter()
    for _ in range(builds * 10):
        limits.on_push("2", push)
        pool.select()
    per_push = (time.perf_counter() - t0) / (builds * 10) * 1e6
    print(f"selection over {n} accounts ({eligible} eligible):")
    print(f"  select() with the cached view      {per_select:8.2f} us")
    print(f"  build_view() full eligibility pass {per_build:8.1f} us")
    print(f"  push (stays eligible) + select()   {per_push:8.1f} us")
    print(f"  select() right after an eligibility change {per_cold:8.1f} us")


async def seed(server: LiveServer, names: list[str], work: Path) -> str:
    """Create linked, keyed users and a master key straight in the store; return the key."""
    settings = server.settings
    cipher = KeyCipher(settings.openai_key_encryption_secret)
    store = SqliteStore(settings.db_path)
    await store.open()
    try:
        for name in names:
            user = await users.create_user(store, name, None)
            await users.rotate_key(
                store, cipher, kind="user", prefix=settings.openai_api_key_prefix, user_id=user.id
            )
            auth = work / f"{name}.json"
            auth.write_text(json.dumps(make_auth_json(f"acct_{name}", f"{name}@bench.test")))
            linking.import_auth_json(linking.codex_home(settings, user.id), auth)
        return await users.rotate_key(
            store, cipher, kind="master", prefix=settings.openai_master_key_prefix
        )
    finally:
        await store.close()


async def throughput_bench(args: argparse.Namespace, work: Path) -> None:
    """Drive master-key requests through the real server; print requests/s and spread."""
    codex_bin = FAKE_CODEX if args.fake_codex else find_codex_bin()
    if not codex_bin:
        raise SystemExit("codex binary not found (run scripts/install-codex.sh)")
    fake = FakeBackend().start()
    names = [f"acct{i}" for i in range(args.accounts)]
    server = LiveServer(
        write_settings(
            work / "data",
            codexBin=codex_bin,
            codexConfigOverrides=codex_overrides(fake.url),
            maxTurnsPerAccount=max(4, args.concurrency),
            maxQueueWaitMs=60_000,
            logLevel="warning",
        )
    )
    master = await seed(server, names, work)
    server.start()
    latencies: list[float] = []
    errors = 0
    try:
        url = server.api + "/chat/completions"
        body = {"model": "codex", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {master}"}
        conn = aiohttp.TCPConnector(limit=args.concurrency + 4)
        async with aiohttp.ClientSession(connector=conn) as session:
            # Warm up: every account's app-server started and its limits read.
            for _ in range(2 * args.accounts):
                async with session.post(url, json=body, headers=headers) as resp:
                    await resp.read()
            stop_at = time.perf_counter() + args.seconds

            async def client() -> None:
                nonlocal errors
                while time.perf_counter() < stop_at:
                    t0 = time.perf_counter()
                    async with session.post(url, json=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status != 200:
                            errors += 1
                            continue
                    latencies.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(args.concurrency)))
            elapsed = time.perf_counter() - t0
    finally:
        server.stop()
        fake.stop()
    served = {n: fake.responses_count(f"acct_{n}") for n in names}
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000 if ordered else float("nan")
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1000 if ordered else float("nan")
    kind = "fake app-server (gateway only)" if args.fake_codex else "real codex binary"
    print(
        f"master-key throughput, {args.accounts} accounts, {args.concurrency} clients, "
        f"{kind}, instant fake backend, {os.cpu_count()} cores:"
    )
    print(
        f"  {len(latencies)} ok + {errors} errors in {elapsed:.1f} s = "
        f"{len(latencies) / elapsed:.1f} requests/s; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    if not args.fake_codex:  # the fake app-server never calls the backend
        print(f"  served per account (incl. warm-up): {served}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select-accounts", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--fake-codex", action="store_true", help="instant fake app-server")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="codexpool-poolbench-"))
    selection_bench(args.select_accounts, work)
    if not args.skip_throughput:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:  # the gateway's own loop
            runner.run(throughput_bench(args, work))


if __name__ == "__main__":
    main()
