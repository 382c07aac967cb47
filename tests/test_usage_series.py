"""Usage series over HTTP: per hour and per day, split by account or key, zero-filled, the
cache-hit share, the portal's own view only, and bad parameters as OpenAI-style 400s."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from codexpool import users
from codexpool.app_keys import STORE
from codexpool.config import Settings

from .test_request_log import add_row
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


async def get(api: Any, path: str, cookie: str) -> dict[str, Any]:
    resp = await call(api, "GET", path, cookie)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_admin_and_portal_series(api: Any) -> None:
    store = api.app[STORE]
    ivy_cookie = await new_portal_user(api, "ivy")
    await rotate_user_key(api, ivy_cookie)
    jon_cookie = await new_portal_user(api, "jon")
    ivy = (await users.get_user(store, "ivy")).id  # type: ignore[union-attr]
    jon = (await users.get_user(store, "jon")).id  # type: ignore[union-attr]
    key = await users.live_key_row(store, user_id=ivy, kind="user")
    assert key is not None
    now = time.time()
    hour = now - now % 3600
    tokens = {"input_tokens": 100, "cached_tokens": 40, "output_tokens": 10}
    # This hour: 2 of ivy's own + 1 pool request on ivy; 2 hours ago: 1 of jon's (failed).
    for _ in range(2):
        await add_row(
            store, hour + 1, key_id=key["id"], key_user_id=ivy, account_user_id=ivy, **tokens
        )
    await add_row(store, hour + 2, key_kind="master", key_id=999, account_user_id=ivy, **tokens)
    await add_row(store, hour - 7200 + 5, key_user_id=jon, account_user_id=jon, status=502)
    admin = await admin_login(api)
    data = await get(api, "/api/admin/usage/series?bucket=hour&count=3", admin)
    assert data["bucket"] == "hour" and data["by"] == "account"
    assert data["starts"] == [hour - 7200, hour - 3600, hour]
    by = {g["name"]: g for g in data["groups"]}
    assert by["ivy"]["requests"] == [0, 0, 3] and by["jon"]["requests"] == [1, 0, 0]
    assert by["jon"]["errors"] == [1, 0, 0]
    assert data["totals"]["cachedTokens"] == [0, 0, 120]
    assert data["cacheHitShare"] == pytest.approx(0.4)
    keys = await get(api, "/api/admin/usage/series?bucket=hour&count=3&by=key", admin)
    names = {g["name"]: g["requests"] for g in keys["groups"]}
    assert names[f"ivy {key['hint']}"] == [0, 0, 2] and names["master key"] == [0, 0, 1]
    days = await get(api, "/api/admin/usage/series", admin)
    assert len(days["starts"]) == 14 and sum(days["totals"]["requests"]) == 4

    mine = await get(api, "/api/openai/usage/series?bucket=hour&count=3", ivy_cookie)
    assert {g["name"]: g["requests"] for g in mine["groups"]} == {
        "mine": [0, 0, 2],
        "pool (master key)": [0, 0, 1],
    }
    own_keys = await get(api, "/api/openai/usage/series?bucket=hour&count=3&by=key", ivy_cookie)
    assert [g["requests"] for g in own_keys["groups"]] == [[0, 0, 2]]
    jons = await get(api, "/api/openai/usage/series?bucket=hour&count=3", jon_cookie)
    assert sum(jons["totals"]["requests"]) == 1  # never ivy's
    resp = await call(api, "GET", "/api/admin/usage/series", ivy_cookie)
    await assert_openai_error(resp, 401, None)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("bucket=week", "bucket"),
        ("by=model", "by"),
        ("bucket=hour&count=169", "count"),
        ("count=0", "count"),
        ("count=367", "count"),
    ],
)
async def test_bad_series_parameters(api: Any, query: str, param: str) -> None:
    admin = await admin_login(api)
    resp = await call(api, "GET", f"/api/admin/usage/series?{query}", admin)
    err = await assert_openai_error(resp, 400, "invalid_request")
    assert err["param"] == param
