"""Usage reports over HTTP (admin and portal) and retention pruning, over a temp store."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from codexpool import users
from codexpool.app_keys import STORE
from codexpool.config import Settings
from codexpool.usage import prune
from codexpool.usage_report import since

from .users_helpers import (
    admin_login,
    assert_openai_error,
    call,
    new_portal_user,
    rotate_user_key,
)


@pytest.fixture
def settings(backend_settings: Callable[..., Settings]) -> Settings:
    """Run this module's app tests on both store backends (SQLite, PostgreSQL)."""
    return backend_settings()


async def add_row(
    store: Any,
    ts: float,
    key_id: int | None,
    kind: str,
    account: int | None,
    status: int = 200,
    tokens: int = 10,
) -> None:
    await store.execute(
        "INSERT INTO requests (ts, endpoint, key_id, key_kind, account_user_id, status,"
        " input_tokens, cached_tokens, output_tokens, reasoning_tokens, latency_ms, ttft_ms)"
        " VALUES (?, 'chat.completions', ?, ?, ?, ?, ?, 1, 2, 0, 100, 40)",
        (ts, key_id, kind, account, status, tokens),
    )


async def test_admin_and_portal_usage(api: Any) -> None:
    store = api.app[STORE]
    ivy = await new_portal_user(api, "ivy")
    await rotate_user_key(api, ivy)
    jon = await new_portal_user(api, "jon")
    ivy_id = (await users.get_user(store, "ivy")).id  # type: ignore[union-attr]
    jon_id = (await users.get_user(store, "jon")).id  # type: ignore[union-attr]
    ivy_key = await users.live_key_row(store, user_id=ivy_id, kind="user")
    assert ivy_key is not None
    now = time.time()
    yesterday = since(1, now) - 3600
    await add_row(store, now, ivy_key["id"], "user", ivy_id)
    await add_row(store, now, ivy_key["id"], "user", ivy_id, status=502, tokens=0)
    await add_row(store, now, 99, "master", ivy_id)
    await add_row(store, now, 99, "master", jon_id)
    await add_row(store, now, 99, "master", None, status=429, tokens=0)
    await add_row(store, yesterday, ivy_key["id"], "user", ivy_id)
    await add_row(store, now - 40 * 86_400, ivy_key["id"], "user", ivy_id)

    admin = await admin_login(api)
    data = await (await call(api, "GET", "/api/admin/usage?days=1", admin)).json()
    assert data["days"] == 1 and data["since"] == since(1)
    by_account = {r["username"]: r for r in data["byAccount"]}
    assert by_account["ivy"]["requests"] == 3 and by_account["ivy"]["errors"] == 1
    assert by_account["ivy"]["inputTokens"] == 20 and by_account["ivy"]["outputTokens"] == 6
    assert by_account["ivy"]["cachedTokens"] == 3 and by_account["ivy"]["cacheHitShare"] == 0.15
    assert by_account[None]["cacheHitShare"] is None  # no input tokens: no share
    assert by_account["jon"]["requests"] == 1
    assert by_account[None]["requests"] == 1 and by_account[None]["userId"] is None
    by_key = {r["keyKind"]: r for r in data["byKey"]}
    assert by_key["user"]["requests"] == 2 and by_key["user"]["username"] == "ivy"
    assert by_key["user"]["keyHint"] == ivy_key["hint"]
    assert by_key["master"]["requests"] == 3 and by_key["master"]["errors"] == 1
    assert data["totals"]["requests"] == 5 and data["totals"]["avgLatencyMs"] == 100.0
    week = await (await call(api, "GET", "/api/admin/usage", admin)).json()
    assert week["days"] == 7 and week["totals"]["requests"] == 6
    assert [r["day"] for r in week["byAccount"]][-1] < week["byAccount"][0]["day"]
    for bad in ("0", "367", "x", "-1"):
        resp = await call(api, "GET", f"/api/admin/usage?days={bad}", admin)
        err = await assert_openai_error(resp, 400, "invalid_request")
        assert err["param"] == "days"

    mine = await (await call(api, "GET", "/api/openai/usage?days=2", ivy)).json()
    assert [r["requests"] for r in mine["byKey"]] == [2, 1]  # today, yesterday
    assert [r["requests"] for r in mine["servedByAccount"]] == [3, 1]
    assert mine["servedByAccount"][0]["poolRequests"] == 1
    theirs = await (await call(api, "GET", "/api/openai/usage", jon)).json()
    assert theirs["byKey"] == [] and theirs["servedByAccount"][0]["requests"] == 1
    resp = await call(api, "GET", "/api/openai/usage?days=abc", jon)
    await assert_openai_error(resp, 400, "invalid_request")

    assert await prune(store, 30) == 1  # the 40-day-old row goes, the rest stays
    assert (await store.fetchone("SELECT COUNT(*) AS n FROM requests"))["n"] == 6


async def test_empty_usage_totals_are_zero_not_null(api: Any) -> None:
    """Regression (found by fuzzing): with no request rows SQLite's SUM is NULL, so the admin
    totals said `"errors": null` where the API promises an integer."""
    admin = await admin_login(api)
    data = await (await call(api, "GET", "/api/admin/usage", admin)).json()
    assert data["totals"]["requests"] == 0
    assert data["totals"]["errors"] == 0
    assert data["totals"]["inputTokens"] == 0


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/admin/usage?days=", "days"),
        ("/api/admin/audit?limit=", "limit"),
        ("/api/openai/usage?days=", "days"),
    ],
)
@pytest.mark.parametrize("value", ["²", "٣", "1²", "%C2%B9"])
async def test_non_ascii_digits_are_a_400_not_a_500(
    api: Any, path: str, param: str, value: str
) -> None:
    """Regression: `"²".isdigit()` is true but `int("²")` raises, which was a 500; digits of
    other scripts ("٣") are refused too, as the docs promise a whole number."""
    admin = await admin_login(api)
    user = await new_portal_user(api, "digits")
    cookie = user if path.startswith("/api/openai/") else admin
    resp = await call(api, "GET", path + value, cookie)
    err = await assert_openai_error(resp, 400, "invalid_request")
    assert err["param"] == param
