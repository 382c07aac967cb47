"""Request log benchmark: one page of 100 rows over a generated database of a million requests.

Builds a database through the real Store (so it has exactly the migrations and indexes the
server has; no ANALYZE, as a server never runs one), fills `requests` with N generated rows
spread over 90 days (50 users, 40 % of requests on the master key, 5 % 4xx, 2 % 5xx), then
times `request_log.admin_page` / `user_page` (the code behind `GET /api/admin/requests` and
`GET /api/openai/requests`) for the first page, a deep page reached by cursor and each filter.
Not a test: it prints figures (median and worst of the repeats, in ms).

    .venv/bin/python bench/request_log.py [--rows 1000000] [--repeat 20] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from multidict import MultiDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codexpool import request_log, usage_series  # noqa: E402
from codexpool.store import SqliteStore, Store  # noqa: E402
from codexpool.usage import INSERT_SQL  # noqa: E402

USERS = 50
DAYS = 90


def generate(path: Path, rows: int, seed: int = 19) -> None:
    """Fill the requests table with `rows` plausible rows (fast: one sqlite3 transaction)."""
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous = OFF")
    now = time.time()
    con.executemany(
        "INSERT INTO users (id, username, created_at) VALUES (?, ?, ?)",
        [(i, f"user{i:02d}", now) for i in range(1, USERS + 1)],
    )
    start = now - DAYS * 86_400
    step = DAYS * 86_400 / rows

    def row(i: int) -> tuple[object, ...]:
        master = rng.random() < 0.4
        user = rng.randint(1, USERS)
        account = rng.randint(1, USERS) if master else user
        roll = rng.random()
        status = 502 if roll < 0.02 else 429 if roll < 0.07 else 200
        error = None if status == 200 else ("upstream_error" if status == 502 else "usage_limit")
        return (
            start + i * step + rng.random() * step,
            "chat.completions",
            None if master else user,
            "master" if master else "user",
            account,
            "gpt-5.5",
            1,
            status,
            error,
            rng.uniform(300, 9000),
            rng.uniform(100, 900),
            rng.randint(100, 20_000),
            rng.randint(0, 10_000),
            rng.randint(10, 2_000),
            0,
            f"{i:032x}",
            "medium",
            None if error is None else "upstream",
            None if error is None else "ChatGPT said no",
            None if master else user,
        )

    batch = 50_000
    for first in range(0, rows, batch):
        con.executemany(INSERT_SQL, (row(i) for i in range(first, min(rows, first + batch))))
        con.commit()
    con.close()


async def timed(repeat: int, coro_factory) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """Return (median ms, worst ms, rows of the last page) over `repeat` runs."""
    times: list[float] = []
    got = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        page = await coro_factory()
        times.append((time.perf_counter() - t0) * 1000)
        got = len(page["data"])
    return statistics.median(times), max(times), got


async def _groups(coro):  # type: ignore[no-untyped-def]
    """Await a usage series and shape it like a page, for timed()."""
    return {"data": (await coro)["groups"]}


async def run(path: Path, repeat: int, size_mib: float) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        await measure(store, f"{path} ({size_mib:.0f} MiB)", repeat)
    finally:
        await store.close()


async def run_postgres(path: Path, repeat: int) -> None:
    """Copy the SQLite file into a private PostgreSQL cluster (as migrate-store does) and time
    the same queries there, after the ANALYZE autovacuum would run after such a load."""
    from codexpool.store import postgres_store
    from codexpool.store.copy import copy_sqlite_to_postgres
    from codexpool.testing.pg_cluster import PgCluster

    with PgCluster.running() as cluster:
        source, target = SqliteStore(path), postgres_store(cluster.create_database("bench"))
        await source.open()
        await target.open()
        try:
            t0 = time.perf_counter()
            await copy_sqlite_to_postgres(source, target, say=lambda _line: None)
            print(f"copied into PostgreSQL (migrate-store) in {time.perf_counter() - t0:.1f} s")
            await target.execute("ANALYZE", bookkeeping=True)
            await measure(target, f"PostgreSQL 127.0.0.1:{cluster.port}", repeat)
        finally:
            await source.close()
            await target.close()


async def measure(store: Store, where: str, repeat: int) -> None:
    """Print the timings of every case on one store."""
    count = (await store.fetchone("SELECT COUNT(*) AS n FROM requests"))["n"]  # type: ignore[index]
    print(f"{count:,} rows in {where}, page of 100")
    print(f"{'query':44} {'p50 ms':>8} {'max ms':>8} {'rows':>5}")

    async def admin(**query: str):  # type: ignore[no-untyped-def]
        f = await request_log.parse_filters(store, MultiDict(query), admin=True)
        return await request_log.admin_page(store, f)

    async def portal(user_id: int, **query: str):  # type: ignore[no-untyped-def]
        f = await request_log.parse_filters(store, MultiDict(query), admin=False)
        return await request_log.user_page(store, user_id, f)

    # A cursor 50 pages deep (5,000 rows back), reached the way a reader would.
    page = await admin()
    for _ in range(49):
        page = await admin(cursor=page["nextCursor"])
    deep = page["nextCursor"]
    week_ago = str(time.time() - 7 * 86_400)
    month_ago = str(time.time() - 30 * 86_400)
    cases = [
        ("admin, first page", lambda: admin()),
        ("admin, page 51 by cursor", lambda: admin(cursor=deep)),
        ("admin, user=user07", lambda: admin(user="user07")),
        ("admin, account=user07", lambda: admin(account="user07")),
        ("admin, status=5xx", lambda: admin(status="5xx")),
        ("admin, status=4xx", lambda: admin(status="4xx")),
        ("admin, status=5xx&account=user07", lambda: admin(status="5xx", account="user07")),
        ("admin, status=5xx&user=user07", lambda: admin(status="5xx", user="user07")),
        ("admin, since=30 d ago&until=7 d ago", lambda: admin(since=month_ago, until=week_ago)),
        ("portal, user07's own + served", lambda: portal(7)),
        ("portal, user07, status=5xx", lambda: portal(7, status="5xx")),
    ]
    for name, factory in cases:
        p50, worst, got = await timed(repeat, factory)
        print(f"{name:44} {p50:8.2f} {worst:8.2f} {got:5}")
    # The usage charts read the same table: one aggregate per answer.
    series = [
        ("usage series, 24 hours by account", "hour", "account", 24),
        ("usage series, 14 days by account", "day", "account", 14),
        ("usage series, 14 days by key", "day", "key", 14),
        ("usage series, 90 days by account", "day", "account", 90),
    ]
    for name, bucket, split, n in series:
        p50, worst, _ = await timed(
            max(3, repeat // 4),
            lambda b=bucket, s=split, n=n: _groups(usage_series.admin_series(store, b, s, n)),
        )
        print(f"{name:44} {p50:8.2f} {worst:8.2f}")
    # What the indexes cost the usage writer: batches of 500 rows (its BATCH_MAX).
    params = [(time.time(), "chat.completions", 7, "user", 7, "gpt-5.5", 1, 200, *[None] * 12)]
    t0 = time.perf_counter()
    for _ in range(20):
        await store.executemany(INSERT_SQL, params * 500, bookkeeping=True)
    per_row = (time.perf_counter() - t0) / 10_000 * 1e6
    print(f"write: 20 transactions of 500 rows, {per_row:.1f} us per row")
    await store.execute("DELETE FROM requests WHERE id > ?", (count,), bookkeeping=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--db", type=Path, help="reuse (or create) this database file")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="then copy it into a private PostgreSQL cluster and time the same queries there",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "requests.sqlite3"
        fresh = not path.exists()
        asyncio.run(_migrate(path))
        if fresh:
            t0 = time.perf_counter()
            generate(path, args.rows)
            print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.0f} s")
        asyncio.run(run(path, args.repeat, path.stat().st_size / 2**20))
        if args.postgres:
            asyncio.run(run_postgres(path, args.repeat))


async def _migrate(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.close()


if __name__ == "__main__":
    main()
