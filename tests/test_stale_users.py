"""Registrations that never link expire: a self-registered portal user with no linked
account, no key, no requests and no sign of life for `unlinkedUserTtlHours` is removed, and
nobody else is (admin-made, keyed, linked, active, disabled or recent users stay).

The real app over HTTP and its real SQLite file; the sweep is called with a `now` in the
future instead of waiting a day.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp

from codexpool import linking
from codexpool.app_keys import DEVICE_LOGINS, SETTINGS, STORE
from codexpool.config import Settings
from codexpool.stale_users import remove_expired_registrations

from .users_helpers import admin_login, call, make_user, session_cookie

PASSWORD = "a-long-password-1"
DAY = 24 * 3600.0


async def _register(api: Any, name: str) -> str:
    resp = await call(
        api, "POST", "/api/openai/auth/register", json={"username": name, "password": PASSWORD}
    )
    assert resp.status == 201, await resp.text()
    return session_cookie(resp)


async def test_only_registrations_that_never_linked_expire(
    aiohttp_client: Any, backend_settings: Callable[..., Settings]
) -> None:
    from codexpool.app import create_app

    api = await aiohttp_client(
        create_app(backend_settings(unlinkedUserTtlHours=24)), cookie_jar=aiohttp.DummyCookieJar()
    )
    app = api.app
    store, settings, logins = app[STORE], app[SETTINGS], app[DEVICE_LOGINS]
    for name in ("ghost", "ghost2", "keyed", "linked", "active", "off"):
        cookie = await _register(api, name)
        if name == "keyed":
            resp = await call(api, "POST", "/api/openai/keys/rotate", cookie, json={})
            assert resp.status == 200
    await make_user(api, "adminmade")  # as `codexpool user add` does: no register row
    row = await store.fetchone("SELECT id FROM users WHERE username = 'linked'")
    home = linking.codex_home(settings, row["id"])
    home.mkdir(parents=True)
    (home / "auth.json").write_text('{"tokens": {"access_token": "a"}}')
    await store.execute("UPDATE users SET disabled = 1 WHERE username = 'off'")
    later = time.time() + DAY + 3600
    # "active" signed in an hour before the sweep (a login writes this audit row).
    await store.execute(
        "INSERT INTO audit (ts, actor, action, target) VALUES (?, 'user:active', 'user.login', "
        "'active')",
        (later - 3600,),
    )

    assert await remove_expired_registrations(store, settings, logins, now=time.time()) == []
    assert await remove_expired_registrations(store, settings, logins, now=later - 2 * 3600) == []
    removed = await remove_expired_registrations(store, settings, logins, now=later)
    assert sorted(removed) == ["ghost", "ghost2"]
    names = {r["username"] for r in await store.fetchall("SELECT username FROM users")}
    assert names == {"keyed", "linked", "active", "off", "adminmade"}
    resp = await call(
        api, "POST", "/api/openai/auth/login", json={"username": "ghost", "password": PASSWORD}
    )
    assert resp.status == 401
    admin = await admin_login(api)
    rows = (await (await call(api, "GET", "/api/admin/audit", admin)).json())["data"]
    assert sorted(r["target"] for r in rows if r["action"] == "user.expire") == ["ghost", "ghost2"]
    assert await remove_expired_registrations(store, settings, logins, now=later) == []


async def test_expiry_can_be_switched_off(
    aiohttp_client: Any, backend_settings: Callable[..., Settings]
) -> None:
    from codexpool.app import create_app

    api = await aiohttp_client(
        create_app(backend_settings(unlinkedUserTtlHours=0)), cookie_jar=aiohttp.DummyCookieJar()
    )
    await _register(api, "ghost")
    app = api.app
    later = time.time() + 365 * DAY
    assert (
        await remove_expired_registrations(app[STORE], app[SETTINGS], app[DEVICE_LOGINS], later)
        == []
    )
