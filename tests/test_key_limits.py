"""Per-key limits without codex: the admission rules over a real SQLite file, and the admin and
portal routes that set and show them (real app, real HTTP through aiohttp's test client)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from codexpool import users
from codexpool.app_keys import CIPHER, KEY_QUOTAS, STORE
from codexpool.errors import ApiError
from codexpool.key_limits import (
    SECONDS_PER_DAY,
    KeyLimits,
    KeyQuotas,
    parse_limits,
)
from codexpool.security import KeyCipher
from codexpool.store import Store
from codexpool.usage import INSERT_SQL, UsageRow

from .users_helpers import admin_login, assert_openai_error, call, make_user, portal_login

ALICE = ("user", 1)


class Clock:
    """A settable clock, so a test can cross midnight UTC."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(store: Store) -> Store:
    """The conftest store (SQLite, then PostgreSQL) with one user, alice."""
    await users.create_user(store, "alice", None)
    return store


async def refused(quotas: KeyQuotas, limits: KeyLimits, *models: str) -> ApiError:
    with pytest.raises(ApiError) as info:
        await quotas.admit(ALICE, limits, models)
    return info.value


async def test_requests_per_day_and_retry_after(store: Store) -> None:
    noon = 20_000 * SECONDS_PER_DAY + 43_200.0
    clock = Clock(noon)
    quotas = KeyQuotas(store, clock)
    limits = KeyLimits(requests_per_day=2)
    for _ in range(2):
        (await quotas.admit(ALICE, limits)).finish()
    err = await refused(quotas, limits)
    assert (err.status, err.code, err.type) == (
        429,
        "key_requests_per_day_exceeded",
        "rate_limit_error",
    )
    assert err.source == "gateway"
    assert int(err.headers["Retry-After"]) == 43_201  # to midnight UTC, rounded up
    # Another owner is not affected; the next UTC day starts from zero.
    (await quotas.admit(("master", None), limits)).finish()
    clock.now = noon + 43_200
    (await quotas.admit(ALICE, limits)).finish()
    assert (await quotas.usage([ALICE]))[ALICE].requests == 1


async def test_tokens_per_day_count_when_requests_end(store: Store) -> None:
    quotas = KeyQuotas(store)
    limits = KeyLimits(tokens_per_day=100)
    ticket = await quotas.admit(ALICE, limits)
    (await quotas.admit(ALICE, limits)).finish(60)  # a second request while the first runs
    ticket.finish(50)
    ticket.finish(50)  # finishing twice counts once
    use = (await quotas.usage([ALICE]))[ALICE]
    assert (use.requests, use.tokens, use.in_flight) == (2, 110, 0)
    err = await refused(quotas, limits)
    assert err.code == "key_tokens_per_day_exceeded" and err.headers["Retry-After"]


async def test_concurrency_slot_is_released(store: Store) -> None:
    quotas = KeyQuotas(store)
    limits = KeyLimits(concurrent_requests=2)
    first = await quotas.admit(ALICE, limits)
    await quotas.admit(ALICE, limits)
    err = await refused(quotas, limits)
    assert (err.status, err.code, err.headers["Retry-After"]) == (
        429,
        "key_concurrency_exceeded",
        "1",
    )
    first.finish()
    await quotas.admit(ALICE, limits)
    assert (await quotas.usage([ALICE]))[ALICE].in_flight == 2
    # A refused request is not counted.
    assert (await quotas.usage([ALICE]))[ALICE].requests == 3


async def test_allowed_models(store: Store) -> None:
    quotas = KeyQuotas(store)
    limits = KeyLimits(allowed_models=("gpt-5.5",))
    (await quotas.admit(ALICE, limits, ("gpt-5.5", "gpt-5.5"))).finish()
    err = await refused(quotas, limits, "gpt-6.1-sol", "gpt-6.1-sol")
    assert (err.status, err.code, err.param) == (403, "model_not_allowed", "model")
    assert "gpt-5.5" in err.message
    err = await refused(quotas, KeyLimits(allowed_models=()), "gpt-5.5")
    assert "allowed: none" in err.message


async def test_days_use_is_loaded_from_the_requests_table(store: Store) -> None:
    """A restarted gateway keeps counting today's requests and tokens from the stored rows,
    across key rotations, without the requests refused by the limits themselves."""
    cipher = KeyCipher("k" * 40)
    await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=1)
    old = await users.live_key_row(store, user_id=1, kind="user")
    await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=1)
    new = await users.live_key_row(store, user_id=1, kind="user")
    assert old is not None and new is not None
    now = time.time()
    rows = [
        UsageRow(now - 5, "chat.completions", old["id"], "user", 1, "m", True, 200,
                 input_tokens=10, output_tokens=5),
        UsageRow(now - 4, "chat.completions", new["id"], "user", 1, "m", False, 502,
                 error_code="upstream_error"),
        UsageRow(now - 3, "chat.completions", new["id"], "user", 1, "m", False, 429,
                 error_code="key_requests_per_day_exceeded"),
        UsageRow(now - 2 * SECONDS_PER_DAY, "chat.completions", new["id"], "user", 1, "m",
                 False, 200, input_tokens=1000),
    ]  # fmt: skip
    await store.executemany(INSERT_SQL, [r.as_params() for r in rows])
    use = await KeyQuotas(store).usage([ALICE, ("master", None)])
    assert (use[ALICE].requests, use[ALICE].tokens) == (2, 15)
    assert use[("master", None)].requests == 0
    quotas = KeyQuotas(store)
    err = await refused(quotas, KeyLimits(requests_per_day=2))
    assert err.code == "key_requests_per_day_exceeded"


async def test_rotation_keeps_limits(store: Store) -> None:
    cipher = KeyCipher("k" * 40)
    assert not await users.set_key_limits(store, ALICE, KeyLimits(requests_per_day=1))
    key1 = await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=1)
    limits = KeyLimits(3, 400, 2, ("a", "b"))
    assert await users.set_key_limits(store, ALICE, limits)
    assert (await users.lookup_key(store, key1)).limits == limits  # type: ignore[union-attr]
    key2 = await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=1)
    assert await users.lookup_key(store, key1) is None
    principal = await users.lookup_key(store, key2)
    assert principal is not None and principal.limits == limits and principal.owner == ALICE


@pytest.mark.parametrize(
    "body, param",
    [
        ({"requestsPerDay": -1}, "requestsPerDay"),
        ({"requestsPerDay": 1.5}, "requestsPerDay"),
        ({"tokensPerDay": True}, "tokensPerDay"),
        ({"concurrentRequests": "2"}, "concurrentRequests"),
        ({"tokensPerDay": 10**13}, "tokensPerDay"),
        ({"allowedModels": "gpt-5.5"}, "allowedModels"),
        ({"allowedModels": [""]}, "allowedModels[0]"),
        ({"allowedModels": ["a", "a"]}, "allowedModels"),
        ({"allowedModels": [3]}, "allowedModels[0]"),  # the entry itself
        ({"allowedModels": ["m"] * 101}, "allowedModels"),
    ],
)
def test_parse_limits_rejects(body: dict, param: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_limits(body)
    assert (info.value.status, info.value.param) == (400, param)


def test_parse_limits_accepts() -> None:
    assert parse_limits({}) == KeyLimits()
    assert parse_limits({"requestsPerDay": 500.0}) == KeyLimits(requests_per_day=500)
    assert parse_limits(
        {"requestsPerDay": 0, "tokensPerDay": None, "allowedModels": [" gpt-5.5 "]}
    ) == KeyLimits(requests_per_day=0, allowed_models=("gpt-5.5",))


async def test_admin_sets_limits_and_both_panels_show_them(api: Any) -> None:
    admin = await admin_login(api)
    path = "/api/admin/openai-users/key-limits"
    await make_user(api, "ivy")
    # No key yet: nothing to limit.
    resp = await call(api, "POST", path, admin, json={"username": "ivy", "requestsPerDay": 5})
    await assert_openai_error(resp, 404, "key_not_found")
    store, cipher = api.app[STORE], api.app[CIPHER]
    user = await users.get_user(store, "ivy")
    assert user is not None
    await users.rotate_key(store, cipher, kind="user", prefix="sk-", user_id=user.id)
    for body, status, code in (
        ({"username": "ivy", "master": True}, 400, "invalid_request"),
        ({}, 400, "invalid_username"),
        ({"username": "nobody"}, 404, "user_not_found"),
        ({"username": "ivy", "requestsPerDay": "5"}, 400, "invalid_request"),
        ({"username": "ivy", "rpd": 5}, 400, "invalid_request"),
        ({"master": True}, 404, "key_not_found"),
    ):
        await assert_openai_error(await call(api, "POST", path, admin, json=body), status, code)
    await assert_openai_error(
        await call(api, "POST", path, None, json={"username": "ivy"}), 401, None
    )
    want = {
        "requestsPerDay": 5,
        "tokensPerDay": None,
        "concurrentRequests": 1,
        "allowedModels": ["gpt-5.5"],
    }
    resp = await call(api, "POST", path, admin, json={"username": "ivy", **want})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "target": "ivy",
        "limits": want,
        "usageToday": {"requests": 0, "tokens": 0, "inFlight": 0},
    }
    ticket = await api.app[KEY_QUOTAS].admit(("user", user.id), KeyLimits())
    table = await (await call(api, "GET", "/api/admin/openai-users", admin)).json()
    row = table["users"][0]
    assert row["keyLimits"] == want
    assert row["keyUsageToday"] == {"requests": 1, "tokens": 0, "inFlight": 1}
    ticket.finish(42)
    await make_user(api, "zed")
    portal = await portal_login(api, "ivy")
    me = await (await call(api, "GET", "/api/openai/auth/me", portal)).json()
    assert me["keyLimits"] == want
    assert me["keyUsageToday"] == {"requests": 1, "tokens": 42, "inFlight": 0}
    # Rotating on the portal keeps the limits.
    assert (await call(api, "POST", "/api/openai/keys/rotate", portal)).status == 200
    me = await (await call(api, "GET", "/api/openai/auth/me", portal)).json()
    assert me["keyLimits"] == want
    table = await (await call(api, "GET", "/api/admin/openai-users", admin)).json()
    assert table["users"][1]["keyLimits"] is None  # zed has no key
    # Clearing: an empty set of limits.
    resp = await call(api, "POST", path, admin, json={"username": "IVY"})
    assert (await resp.json())["limits"] == KeyLimits().as_json()
    audit = await (await call(api, "GET", "/api/admin/audit", admin)).json()
    assert [r["action"] for r in audit["data"]].count("key.limits") == 2
