"""The pool end to end: the real server, the real codex app-servers, the fake backend scripted
per account, driven with the async openai SDK and the admin API.

Accounts get fresh fake account ids per test (the fake backend lives for the whole session).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import pytest

from codexpool import linking, users
from codexpool.security import KeyCipher
from codexpool.store import create_store
from codexpool.testing.fake_backend import codex_overrides, make_auth_json

from .conftest import ADMIN_PASSWORD, LiveServer

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hi"}]


class Pool:
    """A server with linked, keyed accounts and a master key, seeded straight into its store."""

    def __init__(self, server: LiveServer, names: list[str]) -> None:
        self.server = server
        self.names = names
        tag = uuid.uuid4().hex[:6]
        self.acct = {n: f"acct_{n}_{tag}" for n in names}  # fake backend account ids
        self.keys: dict[str, str] = {}
        self.ids: dict[str, int] = {}
        self.master = ""

    async def seed(self, tmp: Any) -> None:
        settings = self.server.settings
        cipher = KeyCipher(settings.openai_key_encryption_secret)
        store = create_store(settings)  # the SQLite file, or databaseUrl's PostgreSQL
        await store.open()
        try:
            for name in self.names:
                user = await users.create_user(store, name, None)
                self.ids[name] = user.id
                self.keys[name] = await users.rotate_key(
                    store,
                    cipher,
                    kind="user",
                    prefix=settings.openai_api_key_prefix,
                    user_id=user.id,
                )
                auth = tmp / f"{name}-auth.json"
                auth.write_text(json.dumps(make_auth_json(self.acct[name], f"{name}@x.test")))
                linking.import_auth_json(linking.codex_home(settings, user.id), auth)
            self.master = await users.rotate_key(
                store, cipher, kind="master", prefix=settings.openai_master_key_prefix
            )
        finally:
            await store.close()

    def client(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.server.api, api_key=key or self.master, max_retries=0, timeout=60
        )

    def rows(self) -> list[tuple]:
        con = sqlite3.connect(self.server.settings.db_path)
        try:
            return con.execute(
                "SELECT status, error_code, account_user_id, key_kind FROM requests ORDER BY id"
            ).fetchall()
        finally:
            con.close()


async def admin_session(server: LiveServer) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(server.url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    resp = await session.post(
        "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert resp.status == 200
    return session


async def table(admin: aiohttp.ClientSession) -> dict[str, Any]:
    resp = await admin.get("/api/admin/openai-users")
    assert resp.status == 200
    return await resp.json()


async def wait_table(
    admin: aiohttp.ClientSession, ok: Callable[[dict[str, Any]], bool], within: float = 30
) -> dict[str, Any]:
    """Poll the admin table until `ok(table)` holds."""
    deadline = time.monotonic() + within
    while True:
        data = await table(admin)
        if ok(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"admin table never got there: {json.dumps(data)[:2000]}")
        await asyncio.sleep(0.2)


def all_read(data: dict[str, Any]) -> bool:
    return all(u["limitsFetchedAt"] is not None for u in data["users"])


@pytest.fixture
def make_pool(live_server_factory: Any, fake_backend: Any, codex_bin: str, tmp_path: Any):
    async def factory(names: list[str], **settings: Any) -> Pool:
        server = live_server_factory(
            start=False,
            codexConfigOverrides=codex_overrides(fake_backend.url),
            logLevel="info",
            **settings,
        )
        pool = Pool(server, names)
        await pool.seed(tmp_path)
        return pool

    return factory


def served_counts(fb: Any, pool: Pool) -> dict[str, int]:
    return {n: fb.responses_count(pool.acct[n]) for n in pool.names}


async def test_one_exhausted_of_three_alternates_and_totals(make_pool: Any, fake_backend: Any):
    """The issue's "done when": one of three accounts at 100%: the pool alternates over the
    other two, and the admin list shows all three percentages and the right totals."""
    pool = await make_pool(["ann", "bob", "cat"])
    fb = fake_backend
    resets = int(time.time()) + 4000
    fb.set_usage(pool.acct["ann"], primary_used=25, secondary_used=10)
    fb.set_usage(pool.acct["bob"], primary_used=100, secondary_used=50, primary_resets_at=resets)
    fb.set_usage(pool.acct["cat"], primary_used=60, secondary_used=30)
    pool.server.start()
    async with await admin_session(pool.server) as admin, pool.client() as client:
        data = await wait_table(admin, all_read)
        rows = {u["username"]: u for u in data["users"]}
        assert [rows[n]["hourlyRemaining"] for n in pool.names] == [75.0, 0.0, 40.0]
        assert [rows[n]["weeklyRemaining"] for n in pool.names] == [90.0, 50.0, 70.0]
        assert rows["bob"]["hourlyResetsAt"] == resets
        assert [rows[n]["eligible"] for n in pool.names] == [True, False, True]
        assert rows["bob"]["ineligibleReason"] == "hourly_exhausted"
        assert rows["ann"]["limitsStale"] is False and rows["ann"]["hourlyWindowMins"] == 300
        totals = data["totals"]
        assert totals["hourlyRemaining"] == 115.0 and totals["weeklyRemaining"] == 210.0
        assert totals["eligible"] == 2 and totals["nextResetAt"] == resets
        order = []
        for _ in range(6):
            before = served_counts(fb, pool)
            done = await client.chat.completions.create(model="codex", messages=MESSAGES)
            assert done.choices[0].message.content
            after = served_counts(fb, pool)
            order += [n for n in pool.names if after[n] > before[n]]
        assert order in (["ann", "cat"] * 3, ["cat", "ann"] * 3), order
        assert fb.responses_count(pool.acct["bob"]) == 0


async def test_fair_under_concurrency_and_usage_rows(make_pool: Any, fake_backend: Any):
    """90 master requests (50 then 40 at once) over 3 eligible of 5 accounts: 30/30/30, the
    ineligible two serve none; one usage row per request, naming the serving account."""
    names = ["a1", "a2", "a3", "hx", "wx"]
    pool = await make_pool(names, maxTurnsPerAccount=8, maxQueueWaitMs=60_000)
    fb = fake_backend
    fb.set_usage(pool.acct["hx"], primary_used=100)  # 5-hour window used up
    fb.set_usage(pool.acct["wx"], secondary_used=100)  # weekly window used up
    pool.server.start()
    async with await admin_session(pool.server) as admin, pool.client() as client:
        data = await wait_table(admin, all_read)
        assert data["totals"]["eligible"] == 3

        async def one(i: int) -> str:
            done = await client.chat.completions.create(
                model="codex", messages=[{"role": "user", "content": f"q{i}"}]
            )
            return done.choices[0].message.content or ""

        first = await asyncio.gather(*(one(i) for i in range(50)))
        assert all(first) and len(first) == 50
        assert fb.responses_count(pool.acct["hx"]) == fb.responses_count(pool.acct["wx"]) == 0
        second = await asyncio.gather(*(one(i) for i in range(40)))
        assert all(second)
        assert served_counts(fb, pool) == {"a1": 30, "a2": 30, "a3": 30, "hx": 0, "wx": 0}
        deadline = time.monotonic() + 10
        while True:  # rows are written off the request path, a moment later
            usage = await (await admin.get("/api/admin/usage?days=1")).json()
            served = sum(r["requests"] for r in usage["byAccount"])
            if served == 90 == usage["totals"]["requests"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    assert pool.server.stop() == 0  # drains the usage writer
    rows = pool.rows()
    assert len(rows) == 90 and all(r[:2] == (200, None) and r[3] == "master" for r in rows)
    per_account = {n: sum(1 for r in rows if r[2] == pool.ids[n]) for n in names}
    assert per_account == {"a1": 30, "a2": 30, "a3": 30, "hx": 0, "wx": 0}
    by_account = {r["username"]: r["requests"] for r in usage["byAccount"]}
    assert by_account == {"a1": 30, "a2": 30, "a3": 30}
    assert [(r["keyKind"], r["requests"]) for r in usage["byKey"]] == [("master", 90)]
    assert usage["totals"]["requests"] == 90 and usage["totals"]["errors"] == 0


async def test_usage_limit_fails_over_invisibly_and_cools_down(make_pool: Any, fake_backend: Any):
    pool = await make_pool(["fa", "fb", "fc"])
    fb = fake_backend
    resets = int(time.time()) + 2400
    pool.server.start()
    async with await admin_session(pool.server) as admin, pool.client() as client:
        await wait_table(admin, all_read)
        # Round-robin starts at the lowest id: the first request lands on "fa", whose
        # upstream now answers 429 usage_limit_reached (twice: stream and non-stream).
        fb.script(pool.acct["fa"], fb.usage_limit(resets), fb.usage_limit(resets))
        stream = await client.chat.completions.create(model="codex", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from the fake backend."
        assert fb.responses_count(pool.acct["fa"]) == 1  # tried once, failed, never again
        for _ in range(4):
            done = await client.chat.completions.create(model="codex", messages=MESSAGES)
            assert done.choices[0].message.content == "Hello from the fake backend."
        counts = served_counts(fb, pool)
        assert counts["fa"] == 1 and counts["fb"] + counts["fc"] == 5
        assert abs(counts["fb"] - counts["fc"]) <= 1
        data = await table(admin)
        fa = next(u for u in data["users"] if u["username"] == "fa")
        assert fa["eligible"] is False and fa["ineligibleReason"] == "cooling_down"
        assert fa["coolingDownUntil"] == resets and fa["coolingDownReason"] == "usage_limit"
        assert fa["hourlyRemaining"] == 0.0  # the 429's headers were pushed too
        # The owner's own key is refused up front with the account's reset time.
        async with pool.client(pool.keys["fa"]) as own:
            with pytest.raises(openai.RateLimitError) as info:
                await own.chat.completions.create(model="codex", messages=MESSAGES)
        assert info.value.body["code"] == "account_exhausted"
        assert str(resets) in info.value.body["message"]
        assert info.value.response.headers["x-codexpool-error-source"] == "gateway"
        assert fb.responses_count(pool.acct["fa"]) == 1
    assert pool.server.stop() == 0
    rows = pool.rows()
    assert [r[0] for r in rows] == [200] * 5 + [429]
    assert all(r[2] != pool.ids["fa"] for r in rows[:5])  # a row names the account that served


async def test_all_exhausted_gives_pool_exhausted(make_pool: Any, fake_backend: Any):
    pool = await make_pool(["ea", "eb"])
    fb = fake_backend
    now = int(time.time())
    pool.server.start()
    async with await admin_session(pool.server) as admin, pool.client() as client:
        await wait_table(admin, all_read)
        fb.script(pool.acct["ea"], fb.usage_limit(now + 3000))
        fb.script(pool.acct["eb"], fb.usage_limit(now + 1200))
        # Both accounts fail over in turn; then nobody is left: the gateway's 429.
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as info:
                await client.chat.completions.create(model="codex", messages=MESSAGES)
            err = info.value.body
            assert err["code"] == "pool_exhausted" and err["type"] == "rate_limit_error"
            assert str(now + 1200) in err["message"]  # the earliest reset
            headers = info.value.response.headers
            assert headers["x-codexpool-error-source"] == "gateway"
            assert 1100 <= int(headers["retry-after"]) <= 1200
        assert served_counts(fb, pool) == {"ea": 1, "eb": 1}  # the second never went upstream
        data = await table(admin)
        assert data["totals"]["eligible"] == 0 and data["totals"]["nextResetAt"] == now + 1200


async def test_failing_limit_read_falls_back_to_stale_snapshot(make_pool: Any, fake_backend: Any):
    pool = await make_pool(["sa"], openaiRateLimitCacheTtlMs=1000)
    fb = fake_backend
    fb.set_usage(pool.acct["sa"], primary_used=30, secondary_used=20)
    pool.server.start()

    def row(data: dict[str, Any]) -> dict[str, Any]:
        return data["users"][0]

    async with await admin_session(pool.server) as admin:
        await wait_table(admin, lambda d: row(d)["hourlyRemaining"] == 70.0)
        fb.set_usage(pool.acct["sa"], usage_fail=10_000, primary_used=90)
        data = await wait_table(admin, lambda d: row(d)["limitsStale"] is True)
        sa = row(data)
        assert sa["hourlyRemaining"] == 70.0 and sa["weeklyRemaining"] == 80.0  # last good
        assert sa["limitsError"] and sa["limitsAgeSeconds"] >= 1.0
        assert sa["eligible"] is True  # a stale snapshot still counts as known
    # The snapshot survives a restart, still stale while reads keep failing.
    assert pool.server.stop() == 0
    pool.server.start()
    async with await admin_session(pool.server) as admin, pool.client() as client:
        sa = row(await table(admin))
        assert sa["hourlyRemaining"] == 70.0 and sa["limitsStale"] is True
        done = await client.chat.completions.create(model="codex", messages=MESSAGES)
        assert done.choices[0].message.content
        # The turn's pushed headers are fresh values: no longer stale, 10% left.
        data = await wait_table(admin, lambda d: row(d)["limitsStale"] is False)
        assert row(data)["hourlyRemaining"] == 10.0
        fb.set_usage(pool.acct["sa"], usage_fail=0)
