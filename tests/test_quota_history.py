"""Quota history: thinning of readings into points (real SQLite), the HTTP report with reset
marks, projections and pool totals in accounts' worth, pruning, and a real push through codex."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from codexpool import quota_history, users
from codexpool.account_limits import Limits
from codexpool.app_keys import LIMITS, STORE
from codexpool.codex.events import RateLimitSnapshot, RateLimitWindow
from codexpool.store import Store
from tests.conftest import ADMIN_PASSWORD

from .users_helpers import admin_login, assert_openai_error, call, make_user


def reading(ts: float, hourly: float, weekly: float, h_reset: int, w_reset: int) -> Limits:
    return Limits(hourly, 300, h_reset, weekly, 10080, w_reset, "plus", ts)


async def test_readings_are_thinned_and_written(store: Store) -> None:
    await store.execute("INSERT INTO users (id, username, created_at) VALUES (1, 'ivy', 0)")
    history = quota_history.QuotaHistory(store, thin_s=300)
    t = 1_800_000_000.0
    history.take(1, reading(t, 10, 5, 9000, 99000))
    history.take(1, reading(t + 60, 12, 5, 9000, 99000))  # within 5 min: dropped
    history.take(1, reading(t + 299, 14, 5, 9000, 99000))  # still within: dropped
    history.take(1, reading(t + 301, 15, 6, 9000, 99000))  # kept
    history.take(1, reading(t + 320, 0, 6, 9900, 99000))  # a new 5-hour window: kept
    history.take(1, replace_ok(reading(t + 900, 50, 6, 9900, 99000)))  # stale: never kept
    history.take(2, reading(t, 10, 5, 9000, 99000))  # user 2 does not exist: dropped
    assert history.pending == 4
    await history.write()
    assert history.pending == 0
    rows = await store.fetchall("SELECT user_id, ts, primary_used FROM quota_history")
    assert [(r[0], r[1] - t, r[2]) for r in rows] == [(1, 0, 10), (1, 301, 15), (1, 320, 0)]
    # Pruning goes by age.
    await store.execute(
        "UPDATE quota_history SET ts = ? WHERE ts = ?", (time.time() - 91 * 86400, t)
    )
    assert await quota_history.prune(store, 90) == 1


def replace_ok(limits: Limits) -> Limits:
    from dataclasses import replace

    return replace(limits, ok=False, error="read failed")


async def add_point(
    store: Any, uid: int, ts: float, hourly: float, weekly: float, h_reset: float, w_reset: float
) -> None:
    await store.execute(
        "INSERT INTO quota_history (user_id, ts, primary_used, primary_resets_at, secondary_used,"
        " secondary_resets_at) VALUES (?, ?, ?, ?, ?, ?)",
        (uid, ts, hourly, int(h_reset), weekly, int(w_reset)),
    )


async def test_report_projects_and_counts_accounts_worth(api: Any) -> None:
    store = api.app[STORE]
    await make_user(api, "ivy")
    await make_user(api, "jon")
    ivy = (await users.get_user(store, "ivy")).id  # type: ignore[union-attr]
    jon = (await users.get_user(store, "jon")).id  # type: ignore[union-attr]
    now = time.time()
    h_reset, w_reset = now + 5 * 3600, now + 86400
    # ivy burns 30 % of her 5-hour window and 2 % of her week in 49 min; a window reset 3 h ago.
    await add_point(store, ivy, now - 4 * 3600, 80, 4, now - 3 * 3600, w_reset)
    await add_point(store, ivy, now - 3000, 20, 10, h_reset, w_reset)
    await add_point(store, ivy, now - 1800, 35, 11, h_reset, w_reset)
    await add_point(store, ivy, now - 60, 50, 12, h_reset, w_reset)
    # jon sits still at 90 % (5-hour) and 40 % (weekly).
    await add_point(store, jon, now - 3000, 90, 40, now + 4 * 3600, w_reset)
    await add_point(store, jon, now - 100, 90, 40, now + 4 * 3600, w_reset)
    admin = await admin_login(api)
    resp = await call(api, "GET", "/api/admin/quota-history?hours=24", admin)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["hours"] == 24
    by_name = {a["account"]: a for a in data["accounts"]}
    a = by_name["ivy"]
    # The window that reset 3 h ago drops to 0 there, between two readings.
    assert [p["hourlyUsed"] for p in a["points"]] == [80, 0, 20, 35, 50]
    assert a["points"][1]["ts"] == int(now - 3 * 3600) and a["points"][1]["weeklyUsed"] == 4
    assert {"window": "hourly", "at": int(now - 3 * 3600)} in a["resets"]
    assert {"window": "weekly", "at": int(w_reset)} in a["resets"]
    hourly = a["hourly"]
    rate = 30 / (2940 / 3600)  # percent per hour over the last hour's points
    assert hourly["used"] == 50 and hourly["ratePerHour"] == pytest.approx(rate, abs=0.01)
    assert hourly["exhaustsAt"] == pytest.approx(now + 50 / rate * 3600, abs=5)
    assert hourly["resetsFirst"] is False
    weekly = a["weekly"]
    weekly_rate = 2 / (2940 / 3600)
    assert weekly["ratePerHour"] == pytest.approx(weekly_rate, abs=0.01)
    # 88 % at 2.45 %/h lasts 36 h, but the week resets in 24 h: no exhaustion to announce.
    assert weekly["exhaustsAt"] is None and weekly["resetsFirst"] is True
    assert (
        by_name["jon"]["hourly"]["ratePerHour"] == 0
        and by_name["jon"]["hourly"]["exhaustsAt"] is None
    )
    pool = data["pool"]
    assert pool["accounts"] == 2
    assert pool["hourly"]["accountsLeft"] == pytest.approx(0.6)  # 50 % + 10 % of one account
    assert pool["weekly"]["accountsLeft"] == pytest.approx(1.48)
    assert pool["hourly"]["exhaustsAt"] == pytest.approx(now + 0.6 / (rate / 100) * 3600, abs=5)
    assert pool["weekly"]["exhaustsAt"] is None  # 1.48 accounts at 0.0245/h: resets first
    series = pool["hourly"]["series"]
    assert series[-1]["left"] == pytest.approx(0.6)
    # 3.5 h ago only ivy had a point (80 % used, but that window reset at -3 h; not yet).
    assert any(p["left"] == pytest.approx(0.2) for p in series)

    one = await (
        await call(api, "GET", f"/api/admin/quota-history?account={jon}&hours=2", admin)
    ).json()
    assert [x["account"] for x in one["accounts"]] == ["jon"]
    by_username = await (
        await call(api, "GET", "/api/admin/quota-history?account=ivy", admin)
    ).json()
    assert [x["accountId"] for x in by_username["accounts"]] == [ivy]
    # A point older than the range still sets the value at the chart's left edge.
    short = await (
        await call(api, "GET", f"/api/admin/quota-history?account={ivy}&hours=1", admin)
    ).json()
    assert short["accounts"][0]["points"][0]["hourlyUsed"] == 80


async def test_pushed_limits_become_points(api: Any) -> None:
    store = api.app[STORE]
    await make_user(api, "kai")
    kai = (await users.get_user(store, "kai")).id  # type: ignore[union-attr]
    limits = api.app[LIMITS]
    resets = int(time.time()) + 3600
    snap = RateLimitSnapshot(
        RateLimitWindow(42.0, 300, resets), RateLimitWindow(7.0, 10080, resets + 86400)
    )
    limits.on_push(str(kai), snap)
    limits.on_push(str(kai), snap)  # a second push within minutes: thinned away
    await limits.flush()
    rows = await store.fetchall("SELECT primary_used, secondary_used FROM quota_history")
    assert [tuple(r) for r in rows] == [(42.0, 7.0)]
    admin = await admin_login(api)
    data = await (await call(api, "GET", "/api/admin/quota-history?account=kai", admin)).json()
    assert data["accounts"][0]["hourly"]["used"] == 42.0
    assert data["accounts"][0]["hourly"]["resetsAt"] == resets


@pytest.mark.parametrize(
    ("query", "status", "param"),
    [
        ("hours=0", 400, "hours"),
        ("hours=x", 400, "hours"),
        ("hours=2161", 400, "hours"),  # past usageRetentionDays (90) * 24
        ("account=nobody", 404, "account"),
        ("account=999", 404, "account"),
    ],
)
async def test_bad_quota_queries(api: Any, query: str, status: int, param: str) -> None:
    admin = await admin_login(api)
    resp = await call(api, "GET", f"/api/admin/quota-history?{query}", admin)
    err = await assert_openai_error(resp, status, None)
    assert err["param"] == param
    resp = await call(api, "GET", "/api/admin/quota-history")
    await assert_openai_error(resp, 401, None)


@pytest.mark.e2e
def test_a_real_turn_records_a_point(linked: Any) -> None:
    """The app-server's push after a real codex turn lands in the history."""
    server, key = linked
    req = urllib.request.Request(
        server.url + "/api/openai/v1/chat/completions",
        data=json.dumps(
            {"model": "codex", "messages": [{"role": "user", "content": "hi"}]}
        ).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    login = urllib.request.Request(
        server.url + "/api/auth/login",
        data=json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    opener.open(login, timeout=10).read()
    deadline = time.monotonic() + 10
    points: list[Any] = []
    while time.monotonic() < deadline and not points:
        with opener.open(server.url + "/api/admin/quota-history?account=alice", timeout=10) as r:
            data = json.loads(r.read())
        points = data["accounts"][0]["points"]
        time.sleep(0.3)
    assert points and points[-1]["hourlyUsed"] == 10 and points[-1]["weeklyUsed"] == 5
    assert data["pool"]["hourly"]["accountsLeft"] == 0.9
