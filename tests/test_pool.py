"""Selection as pure functions (selection.py), and the Pool + LimitCache over a temp store."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

from codexpool import linking, users
from codexpool.account_limits import LimitCache, Limits, Target
from codexpool.codex.engine import Engine, EngineConfig
from codexpool.codex.events import RateLimitSnapshot, RateLimitWindow, TurnError
from codexpool.config import Settings
from codexpool.errors import ApiError
from codexpool.pool import Pool
from codexpool.security import KeyCipher
from codexpool.selection import (
    Candidate,
    Cooldown,
    available_at,
    build_view,
    ineligible_reason,
    pick,
)
from codexpool.store import SqliteStore, Store
from codexpool.users import KeyPrincipal

NOW = 1_800_000_000.0


def lim(hourly_used: float | None = 10, weekly_used: float | None = 5, **kw: object) -> Limits:
    base = dict(
        primary_used=hourly_used,
        primary_window_mins=300,
        primary_resets_at=int(NOW) + 3600,
        secondary_used=weekly_used,
        secondary_window_mins=10080,
        secondary_resets_at=int(NOW) + 86_400,
        plan_type="plus",
        fetched_at=NOW - 5,
    )
    base.update(kw)
    return Limits(**base)  # type: ignore[arg-type]


def cand(uid: int, **kw: object) -> Candidate:
    return Candidate(uid, f"u{uid}", Path(f"/homes/{uid}"), **{"linked": True, **kw})  # type: ignore[arg-type]


def test_ineligible_reasons_in_order() -> None:
    ok = lim()
    assert ineligible_reason(cand(1), ok, None, NOW) is None
    assert ineligible_reason(cand(1, disabled=True, linked=False), ok, None, NOW) == "disabled"
    assert ineligible_reason(cand(1, linked=False), ok, None, NOW) == "not_linked"
    assert ineligible_reason(cand(1, opt_in=False), ok, None, NOW) == "opted_out"
    cooling = Cooldown(NOW + 60, "usage_limit")
    assert ineligible_reason(cand(1), ok, cooling, NOW) == "cooling_down"
    assert ineligible_reason(cand(1), ok, Cooldown(NOW - 1, "usage_limit"), NOW) is None
    assert ineligible_reason(cand(1), None, None, NOW) == "limits_unknown"
    assert ineligible_reason(cand(1), lim(hourly_used=None), None, NOW) == "limits_unknown"
    assert ineligible_reason(cand(1), lim(weekly_used=None), None, NOW) == "limits_unknown"
    assert ineligible_reason(cand(1), lim(hourly_used=100), None, NOW) == "hourly_exhausted"
    assert ineligible_reason(cand(1), lim(weekly_used=100.0), None, NOW) == "weekly_exhausted"
    assert ineligible_reason(cand(1), lim(hourly_used=99.9), None, NOW) is None
    # A stale snapshot still counts as known.
    assert ineligible_reason(cand(1), lim(ok=False, error="x"), None, NOW) is None


def test_window_that_has_reset_counts_as_full() -> None:
    spent = lim(hourly_used=100, primary_resets_at=int(NOW) - 1)
    assert spent.hourly_remaining(NOW) == 100.0
    assert spent.hourly_remaining() == 0.0  # without a clock: the raw value
    assert ineligible_reason(cand(1), spent, None, NOW) is None
    assert lim(hourly_used=-5).hourly_remaining(NOW) == 100.0
    assert lim(hourly_used=42.25).hourly_remaining(NOW) == 57.8


def test_available_at_waits_for_every_blocker() -> None:
    both = lim(hourly_used=100, weekly_used=100)
    assert available_at(both, None, NOW) == NOW + 86_400
    assert available_at(lim(hourly_used=100), None, NOW) == NOW + 3600
    assert available_at(lim(), Cooldown(NOW + 50, "usage_limit"), NOW) == NOW + 50
    assert available_at(lim(), None, NOW) is None
    assert available_at(None, None, NOW) is None


def test_build_view() -> None:
    cands = [cand(5), cand(2), cand(3, opt_in=False), cand(4), cand(1), cand(6), cand(7)]
    limits = {
        5: lim(),
        2: lim(),
        3: lim(),
        4: lim(hourly_used=100, primary_resets_at=int(NOW) + 900),
        1: lim(),
        7: lim(weekly_used=100, secondary_resets_at=int(NOW) + 5000),
    }
    cooldowns = {1: Cooldown(NOW + 300, "usage_limit")}
    view = build_view(cands, limits, cooldowns, NOW)
    assert view.eligible == (2, 5)
    assert view.reasons == {
        1: "cooling_down",
        3: "opted_out",
        4: "hourly_exhausted",
        6: "limits_unknown",
        7: "weekly_exhausted",
    }
    assert view.members == 6 and view.unknown == (6,)
    assert view.next_reset == NOW + 300
    assert view.valid_until == NOW + 300
    later = build_view(cands, limits, cooldowns, NOW + 301)
    assert later.eligible == (1, 2, 5) and later.next_reset == NOW + 900


def test_pick_is_round_robin_by_id() -> None:
    eligible = (2, 5, 9)
    last, order = -1, []
    for _ in range(7):
        last = pick(eligible, last)
        order.append(last)
    assert order == [2, 5, 9, 2, 5, 9, 2]
    assert pick((2, 9), 5) == 9  # 5 left the pool: the next one after it, no skip back
    assert pick((2, 5, 9), 9) == 2


@pytest.mark.parametrize("n,k", [(90, 3), (100, 7), (7, 3), (1000, 1000)])
def test_pick_is_fair(n: int, k: int) -> None:
    eligible = tuple(range(10, 10 + 3 * k, 3))
    last, counts = -1, collections.Counter()
    for _ in range(n):
        last = pick(eligible, last)
        counts[last] += 1
    assert set(counts.values()) <= {n // k, -(-n // k)}
    assert sum(counts.values()) == n


def test_pick_stays_fair_while_the_set_changes() -> None:
    last, counts = -1, collections.Counter()
    for i in range(60):
        eligible = (1, 2, 3) if i % 10 < 5 else (1, 3)
        last = pick(eligible, last)
        counts[last] += 1
    assert max(counts[1], counts[3]) - min(counts[1], counts[3]) <= 1


# --- Pool and LimitCache over a real store -------------------------------------------------


def snap(hourly_used: float, resets_at: int) -> RateLimitSnapshot:
    return RateLimitSnapshot(
        RateLimitWindow(hourly_used, 300, resets_at),
        RateLimitWindow(5.0, 10080, resets_at + 86_400),
        "plus",
    )


async def seeded(settings: Settings, tmp_path: Path, names: list[str]) -> tuple[Store, list[int]]:
    store = SqliteStore(settings.db_path)
    await store.open()
    cipher = KeyCipher(settings.openai_key_encryption_secret)
    ids = []
    for name in names:
        user = await users.create_user(store, name, None)
        await users.rotate_key(store, cipher, kind="user", prefix="sk-test-", user_id=user.id)
        auth = tmp_path / f"{name}.json"
        auth.write_text(json.dumps({"tokens": {"access_token": "a", "refresh_token": "r"}}))
        linking.import_auth_json(linking.codex_home(settings, user.id), auth)
        ids.append(user.id)
    return store, ids


async def test_pool_selects_fails_over_and_reports(settings: Settings, tmp_path: Path) -> None:
    store, (a, b, c) = await seeded(settings, tmp_path, ["ann", "bob", "cat"])
    engine = Engine(EngineConfig(codex_bin="/nonexistent/codex"))  # never started here
    limits = LimitCache(store, engine, ttl_s=60)
    pool = Pool(settings, store, limits)
    master = KeyPrincipal(99, "master", None, None)
    resets = int(time.time()) + 1800
    try:
        for uid in (a, b, c):
            limits.on_push(str(uid), snap(10, resets))
        limits.on_push(str(b), snap(100, resets))  # bob used up
        served = [(await pool.choose(master)).user_id for _ in range(6)]
        assert served == [a, c, a, c, a, c]
        assert await pool.eligible_count() == 2
        # A usage limit on ann cools her down until its reset; cat serves alone.
        err = TurnError("usage_limit", "limit", resets_at=resets + 60)
        assert pool.mark_failed(pool.account_for(a, "ann"), err) is True
        assert pool.mark_failed(pool.account_for(a, "ann"), TurnError("upstream", "x")) is False
        assert {(await pool.choose(master)).user_id for _ in range(3)} == {c}
        pool.mark_failed(pool.account_for(c, "cat"), TurnError("unauthorized", "gone"))
        with pytest.raises(ApiError) as info:
            await pool.choose(master)
        assert info.value.status == 429 and info.value.code == "pool_exhausted"
        # cat's 10-minute lost-login cooldown ends before bob's and ann's resets.
        assert "earliest resets at" in info.value.message
        assert 590 <= int(info.value.headers["Retry-After"]) <= 600
        # A user key on an exhausted account: the same shape, its own reset time.
        with pytest.raises(ApiError) as own:
            await pool.choose(KeyPrincipal(1, "user", a, "ann"))
        assert own.value.code == "account_exhausted" and str(resets + 60) in own.value.message
        # cat's lost login does not block cat's own key (it says why when it fails).
        assert (await pool.choose(KeyPrincipal(3, "user", c, "cat"))).user_id == c
    finally:
        await limits.close()
        await store.close()


async def test_no_members_is_503(settings: Settings, tmp_path: Path) -> None:
    store, _ = await seeded(settings, tmp_path, [])
    pool = Pool(settings, store, None)
    try:
        with pytest.raises(ApiError) as info:
            await pool.choose(KeyPrincipal(1, "master", None, None))
        assert info.value.status == 503 and info.value.code == "no_linked_accounts"
    finally:
        await store.close()


async def test_failed_read_falls_back_to_last_good_and_persists(
    settings: Settings, tmp_path: Path
) -> None:
    store, (a,) = await seeded(settings, tmp_path, ["ann"])
    engine = Engine(EngineConfig(codex_bin="/nonexistent/codex"))
    limits = LimitCache(store, engine, ttl_s=60)
    target = Target(a, linking.codex_home(settings, a))
    try:
        assert await limits.refresh(target) is None  # never read, read fails: nothing known
        limits.on_push(str(a), snap(30, int(time.time()) + 600))
        assert not limits.due(a)
        stale = await limits.refresh(target, force=True)
        assert stale is not None and stale.ok is False and "codex" in (stale.error or "")
        assert stale.hourly_remaining() == 70.0
        assert limits.reads == 3 + 3  # every failed read was retried
        await limits.flush()
        again = LimitCache(store, engine, ttl_s=60)
        await again.load()
        loaded = again.get(a)
        assert loaded is not None and loaded.ok is False and loaded.hourly_remaining() == 70.0
        assert again.due(a)  # read again soon after a restart
    finally:
        await limits.close()
        await store.close()


async def test_index_follows_changes_at_once_after_invalidate(
    settings: Settings, tmp_path: Path
) -> None:
    store, (a,) = await seeded(settings, tmp_path, ["ann"])
    pool = Pool(settings, store, None)
    try:
        assert [c.user_id for c in await pool.candidates()] == [a]
        _, (b,) = await seeded_more(store, settings, tmp_path, "bob")
        assert [c.user_id for c in await pool.candidates()] == [a]  # within the index TTL
        pool.invalidate()
        assert [c.user_id for c in await pool.candidates()] == [a, b]
        await users.set_pool_opt_in(store, b, False)
        pool.invalidate()
        assert [c.opt_in for c in await pool.candidates()] == [True, False]
        assert [x.user_id for x in await pool.linked_accounts()] == [a]
    finally:
        await store.close()


async def seeded_more(
    store: Store, settings: Settings, tmp_path: Path, name: str
) -> tuple[Store, list[int]]:
    user = await users.create_user(store, name, None)
    cipher = KeyCipher(settings.openai_key_encryption_secret)
    await users.rotate_key(store, cipher, kind="user", prefix="sk-test-", user_id=user.id)
    auth = tmp_path / f"{name}.json"
    auth.write_text(json.dumps({"tokens": {"access_token": "a", "refresh_token": "r"}}))
    linking.import_auth_json(linking.codex_home(settings, user.id), auth)
    return store, [user.id]
