"""Admin and portal accounts over HTTP: sign-in, sessions, keys, reveal, delete, audit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from codexpool import linking
from codexpool.app_keys import STORE
from codexpool.config import Settings

from .conftest import ADMIN_PASSWORD
from .users_helpers import (
    USER_PASSWORD,
    admin_login,
    assert_openai_error,
    call,
    make_user,
    models_status,
    new_portal_user,
    portal_login,
    rotate_user_key,
    session_cookie,
)

ADMIN_ROUTES = [
    ("GET", "/api/auth/me"),
    ("GET", "/api/admin/openai-users"),
    ("POST", "/api/admin/openai-users/reveal-key"),
    ("POST", "/api/admin/openai-users/delete"),
    ("POST", "/api/admin/openai-users/rotate-master-key"),
    ("POST", "/api/admin/openai-users/rotate-owner-key"),
    ("POST", "/api/admin/openai-users/rotate-owner-special-key"),
    ("GET", "/api/admin/audit"),
    ("GET", "/api/admin/usage"),
]
PORTAL_ROUTES = [
    ("GET", "/api/openai/auth/me"),
    ("POST", "/api/openai/keys/rotate"),
    ("POST", "/api/openai/pool/opt-in"),
    ("POST", "/api/openai/codex/device/start"),
    ("GET", "/api/openai/codex/device/status"),
    ("POST", "/api/openai/codex/device/cancel"),
    ("POST", "/api/openai/codex/unlink"),
    ("POST", "/api/openai/codex/execute-session"),
    ("GET", "/api/openai/usage"),
]


@pytest.fixture
def settings(backend_settings: Callable[..., Settings]) -> Settings:
    """Run this module's app tests on both store backends (SQLite, PostgreSQL)."""
    return backend_settings()


async def test_admin_login_me_logout(api: Any) -> None:
    resp = await call(api, "GET", "/api/auth/me")
    err = await assert_openai_error(resp, 401, "authentication_required")
    assert err["message"] == "Authentication required"
    resp = await call(
        api, "POST", "/api/auth/login", json={"username": "admin", "password": "wrong-password"}
    )
    await assert_openai_error(resp, 401, "invalid_credentials")
    resp = await call(
        api, "POST", "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert resp.status == 200
    assert await resp.json() == {"ok": True, "username": "admin"}
    set_cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # plain http, no trusted proxy
    assert "Max-Age=604800" in set_cookie
    cookie = session_cookie(resp)
    resp = await call(api, "GET", "/api/auth/me", cookie)
    assert await resp.json() == {"authenticated": True, "role": "admin", "username": "admin"}
    resp = await call(api, "POST", "/api/auth/logout", cookie)
    assert resp.status == 200
    # Logout fences every admin cookie issued before it, even a copy kept elsewhere.
    await assert_openai_error(
        await call(api, "GET", "/api/admin/openai-users", cookie), 401, "authentication_required"
    )


async def test_one_cookie_holds_both_slots_and_sign_outs_rewrite_it(api: Any) -> None:
    """Signing out of one slot sends the cookie back without it and keeps the other; dropping
    the last slot deletes the cookie; a sign-out with nothing to drop sends no cookie; a
    forged cookie is an anonymous session, not an error."""
    from codexpool.sessions import COOKIE_NAME

    admin = await admin_login(api)
    await make_user(api, "dora")
    body = {"username": "dora", "password": USER_PASSWORD}
    both = session_cookie(await call(api, "POST", "/api/openai/auth/login", admin, json=body))
    assert (await call(api, "GET", "/api/auth/me", both)).status == 200
    assert (await call(api, "GET", "/api/openai/auth/me", both)).status == 200
    resp = await call(api, "POST", "/api/openai/auth/logout", both)
    admin_only = session_cookie(resp)  # rewritten without the portal slot
    assert admin_only != both
    assert (await call(api, "GET", "/api/auth/me", admin_only)).status == 200
    resp = await call(api, "POST", "/api/auth/logout", admin_only)
    assert resp.status == 200 and resp.cookies[COOKIE_NAME].value == ""  # deleted
    resp = await call(api, "POST", "/api/openai/auth/logout")
    assert resp.status == 200 and COOKIE_NAME not in resp.cookies
    resp = await call(api, "GET", "/api/auth/me", "not-a-fernet-token")
    await assert_openai_error(resp, 401, "authentication_required")


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_admin_routes_need_admin_session(api: Any, method: str, path: str) -> None:
    await assert_openai_error(
        await call(api, method, path, json={}), 401, "authentication_required"
    )
    portal = await new_portal_user(api, "pat")
    await assert_openai_error(
        await call(api, method, path, portal, json={}), 401, "authentication_required"
    )


@pytest.mark.parametrize(("method", "path"), PORTAL_ROUTES)
async def test_portal_routes_need_portal_session(api: Any, method: str, path: str) -> None:
    await assert_openai_error(await call(api, method, path, json={}), 401, None)
    admin = await admin_login(api)
    err = await assert_openai_error(await call(api, method, path, admin, json={}), 401, None)
    assert err["code"] == "authentication_required"


async def test_secure_cookie_only_via_trusted_proxy(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    from codexpool.app import create_app

    body = {"username": "admin", "password": ADMIN_PASSWORD}
    https = {"X-Forwarded-Proto": "https"}
    plain = await aiohttp_client(create_app(make_settings()), cookie_jar=aiohttp.DummyCookieJar())
    resp = await call(plain, "POST", "/api/auth/login", json=body, headers=https)
    assert "Secure" not in resp.headers["Set-Cookie"]  # untrusted header ignored


async def test_secure_cookie_behind_trusted_proxy(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    from codexpool.app import create_app

    body = {"username": "admin", "password": ADMIN_PASSWORD}
    proxied = await aiohttp_client(
        create_app(make_settings(trustedProxy=True)), cookie_jar=aiohttp.DummyCookieJar()
    )
    resp = await call(
        proxied, "POST", "/api/auth/login", json=body, headers={"X-Forwarded-Proto": "https"}
    )
    assert "Secure" in resp.headers["Set-Cookie"]


async def test_register_login_me_logout(api: Any) -> None:
    resp = await call(
        api,
        "POST",
        "/api/openai/auth/register",
        json={"username": "Alice", "password": USER_PASSWORD},
    )
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {"ok": True, "username": "alice"}
    cookie = session_cookie(resp)
    resp = await call(api, "GET", "/api/openai/auth/me", cookie)
    me = await resp.json()
    assert me["username"] == "alice"
    assert me["linked"] is False and me["hasKey"] is False
    assert me["keyHint"] is None and me["keyLabel"] is None
    assert me["poolOptIn"] is True
    assert me["device"]["state"] == "idle"
    resp = await call(
        api, "POST", "/api/openai/auth/register", json={"username": "alice", "password": "x" * 9}
    )
    await assert_openai_error(resp, 409, "username_taken")
    # Names are case-folded at sign-in too.
    other = await portal_login(api, "ALICE")
    resp = await call(api, "POST", "/api/openai/auth/logout", cookie)
    assert resp.status == 200
    # Logout ends every session of the user.
    for c in (cookie, other):
        await assert_openai_error(
            await call(api, "GET", "/api/openai/auth/me", c), 401, "authentication_required"
        )


async def test_register_validation(api: Any) -> None:
    cases = [
        ({"username": "ab", "password": USER_PASSWORD}, "invalid_username"),
        ({"username": "bad name!", "password": USER_PASSWORD}, "invalid_username"),
        ({"username": 5, "password": USER_PASSWORD}, "invalid_username"),
        ({"username": "carol", "password": "short"}, "invalid_password"),
        ({"username": "carol"}, "invalid_password"),
        ({"password": USER_PASSWORD}, "invalid_username"),
    ]
    for body, code in cases:
        resp = await call(api, "POST", "/api/openai/auth/register", json=body)
        await assert_openai_error(resp, 400, code)


@pytest.mark.parametrize(
    ("path", "username"), [("/api/openai/auth/login", "dan"), ("/api/auth/login", "admin")]
)
async def test_login_throttle(api: Any, path: str, username: str) -> None:
    if username == "dan":
        await make_user(api, "dan")
    right = USER_PASSWORD if username == "dan" else ADMIN_PASSWORD
    for _ in range(5):
        resp = await call(api, "POST", path, json={"username": username, "password": "nope-nope"})
        await assert_openai_error(resp, 401, "invalid_credentials")
    resp = await call(api, "POST", path, json={"username": username, "password": right})
    await assert_openai_error(resp, 429, "too_many_attempts")
    retry = int(resp.headers["Retry-After"])
    assert 1 <= retry <= 300


async def test_login_throttle_per_address(api: Any) -> None:
    # Real users with cheap hashes: an unknown name costs a full bcrypt check (cost 12).
    for i in range(20):
        await make_user(api, f"ghost{i}")
        resp = await call(
            api, "POST", "/api/openai/auth/login", json={"username": f"ghost{i}", "password": "x"}
        )
        assert resp.status == 401
    resp = await call(
        api, "POST", "/api/openai/auth/login", json={"username": "ghost99", "password": "x"}
    )
    await assert_openai_error(resp, 429, "too_many_attempts")
    assert "Retry-After" in resp.headers


async def test_csrf_rejects_cross_site(api: Any) -> None:
    cookie = await new_portal_user(api, "erin")
    own_origin = f"http://{api.host}:{api.port}"
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://{api.host}:{api.port + 1}"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        resp = await call(api, "POST", "/api/openai/keys/rotate", cookie, json={}, headers=headers)
        await assert_openai_error(resp, 403, "csrf_rejected")
        resp = await call(
            api,
            "POST",
            "/api/auth/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            headers=headers,
        )
        await assert_openai_error(resp, 403, "csrf_rejected")
    resp = await call(
        api,
        "POST",
        "/api/openai/keys/rotate",
        cookie,
        json={},
        headers={"Origin": own_origin, "Sec-Fetch-Site": "same-origin"},
    )
    assert resp.status == 200
    # Reads are not state changes; API-key routes never look at Origin.
    resp = await call(api, "GET", "/api/openai/auth/me", cookie, headers={"Origin": "http://x"})
    assert resp.status == 200


async def test_key_rotation_revokes_old_key(api: Any) -> None:
    cookie = await new_portal_user(api, "frank")
    first = await rotate_user_key(api, cookie, "laptop")
    assert first.startswith("sk-test-") and len(first) >= len("sk-test-") + 40
    assert await models_status(api, first) == 200
    second = await rotate_user_key(api, cookie)
    assert await models_status(api, first) == 401
    assert await models_status(api, second) == 200
    me = await (await call(api, "GET", "/api/openai/auth/me", cookie)).json()
    assert me["hasKey"] is True
    assert me["keyHint"] == f"sk-test-...{second[-4:]}"
    resp = await call(api, "POST", "/api/openai/keys/rotate", cookie, json={"label": "x" * 65})
    await assert_openai_error(resp, 400, None)


async def test_reveal_returns_exactly_the_last_key(api: Any) -> None:
    cookie = await new_portal_user(api, "gina")
    admin = await admin_login(api)
    resp = await call(
        api, "POST", "/api/admin/openai-users/reveal-key", admin, json={"username": "gina"}
    )
    await assert_openai_error(resp, 404, "key_not_found")
    keys = [await rotate_user_key(api, cookie, f"k{i}") for i in range(3)]
    resp = await call(
        api, "POST", "/api/admin/openai-users/reveal-key", admin, json={"username": "GINA"}
    )
    body = await resp.json()
    assert body["key"] == keys[-1]
    assert body["username"] == "gina" and body["label"] == "k2"
    resp = await call(
        api, "POST", "/api/admin/openai-users/reveal-key", admin, json={"username": "nobody"}
    )
    await assert_openai_error(resp, 404, "user_not_found")
    resp = await call(api, "POST", "/api/admin/openai-users/reveal-key", admin, json={})
    await assert_openai_error(resp, 400, "invalid_username")


async def test_delete_kills_cookie_key_and_home(
    api: Any, settings: Settings, tmp_path: Path
) -> None:
    cookie = await new_portal_user(api, "hank")
    key = await rotate_user_key(api, cookie)
    user_id = (await api.app[STORE].fetchone("SELECT id FROM users WHERE username='hank'"))["id"]
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"tokens": {"access_token": "a", "refresh_token": "r"}}))
    home = linking.codex_home(settings, user_id)
    linking.import_auth_json(home, auth)
    spares = [settings.codex_state_path / f"{p}{user_id}.spare" for p in ("", "exec-")]
    other = settings.codex_state_path / f"{user_id + 1}.spare"  # another account's
    for path in (*spares, other):
        path.mkdir(parents=True)
        (path / "state_5.sqlite").write_bytes(b"schema")
    admin = await admin_login(api)
    resp = await call(
        api, "POST", "/api/admin/openai-users/delete", admin, json={"username": "hank"}
    )
    assert await resp.json() == {"ok": True, "username": "hank", "deleted": True}
    await assert_openai_error(
        await call(api, "GET", "/api/openai/auth/me", cookie), 401, "authentication_required"
    )
    assert await models_status(api, key) == 401
    assert not home.exists()
    assert not any(p.exists() for p in spares) and other.exists()
    # A new user that reuses the deleted row's id does not inherit the old cookie.
    await make_user(api, "hank2")
    await assert_openai_error(
        await call(api, "GET", "/api/openai/auth/me", cookie), 401, "authentication_required"
    )
    resp = await call(
        api, "POST", "/api/admin/openai-users/delete", admin, json={"username": "hank"}
    )
    await assert_openai_error(resp, 404, "user_not_found")


async def test_master_key_rotation_and_aliases(api: Any) -> None:
    admin = await admin_login(api)
    table = await (await call(api, "GET", "/api/admin/openai-users", admin)).json()
    assert table["masterKey"] == {
        "exists": False,
        "label": None,
        "hint": None,
        "createdAt": None,
        "lastUsedAt": None,
        "limits": None,
        "usageToday": {"requests": 0, "tokens": 0, "inFlight": 0},
    }
    issued = []
    for name, body in (
        ("rotate-master-key", None),
        ("rotate-owner-key", {}),
        ("rotate-owner-special-key", {"label": "ops"}),
    ):
        kwargs = {"json": body} if body is not None else {}
        resp = await call(api, "POST", f"/api/admin/openai-users/{name}", admin, **kwargs)
        assert resp.status == 200, await resp.text()
        data = await resp.json()
        assert data["key"].startswith("sk-master-")
        assert data["hint"] == f"sk-master-...{data['key'][-4:]}"
        issued.append(data["key"])
        assert await models_status(api, data["key"]) == 200
    assert [await models_status(api, k) for k in issued] == [401, 401, 200]
    table = await (await call(api, "GET", "/api/admin/openai-users", admin)).json()
    assert table["masterKey"]["exists"] is True
    assert table["masterKey"]["label"] == "ops"


async def test_user_table_and_totals(api: Any, settings: Settings, tmp_path: Path) -> None:
    store = api.app[STORE]
    ivy = await new_portal_user(api, "ivy")
    await rotate_user_key(api, ivy, "main")
    await make_user(api, "jack")  # no key, not linked
    ivy_id = (await store.fetchone("SELECT id FROM users WHERE username='ivy'"))["id"]
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"tokens": {"access_token": "a", "refresh_token": "r"}}))
    linking.import_auth_json(linking.codex_home(settings, ivy_id), auth)
    now = time.time()
    await store.execute(
        "INSERT INTO limit_snapshots (user_id, primary_used, primary_resets_at, secondary_used,"
        " secondary_resets_at, fetched_at, ok) VALUES (?, 25, 1900000000, 60, 1900500000, ?, 1)",
        (ivy_id, now),
    )
    for status in (200, 200, 502):
        await store.execute(
            "INSERT INTO requests (ts, endpoint, account_user_id, status) VALUES (?, 'x', ?, ?)",
            (now, ivy_id, status),
        )
    admin = await admin_login(api)
    table = await (await call(api, "GET", "/api/admin/openai-users", admin)).json()
    rows = {u["username"]: u for u in table["users"]}
    ivy_row = rows["ivy"]
    assert ivy_row["linked"] is True and ivy_row["hasKey"] is True
    assert ivy_row["keyLabel"] == "main" and ivy_row["keyHint"].startswith("sk-test-...")
    assert ivy_row["hourlyRemaining"] == 75.0 and ivy_row["hourlyResetsAt"] == 1900000000
    assert ivy_row["weeklyRemaining"] == 40.0 and ivy_row["weeklyResetsAt"] == 1900500000
    assert ivy_row["requestsServed"] == 2
    assert ivy_row["lastUsedAt"] == pytest.approx(now)
    assert ivy_row["limitsStale"] is False
    jack = rows["jack"]
    assert jack["linked"] is False and jack["hasKey"] is False
    assert jack["hourlyRemaining"] is None and jack["weeklyResetsAt"] is None
    assert jack["requestsServed"] == 0 and jack["lastUsedAt"] is None
    assert table["totals"] == {
        "hourlyRemaining": 75.0,
        "weeklyRemaining": 40.0,
        "linked": 1,
        "keyed": 1,
        "users": 2,
        "eligible": 0,  # the pool has not read ivy's limits itself (rows written behind it)
        "nextResetAt": None,
    }
    assert jack["eligible"] is False and jack["ineligibleReason"] == "no_key"
    assert ivy_row["limitsAgeSeconds"] >= 0 and ivy_row["limitsError"] is None


async def test_pool_opt_in(api: Any) -> None:
    cookie = await new_portal_user(api, "kate")
    resp = await call(api, "POST", "/api/openai/pool/opt-in", cookie, json={"optIn": False})
    assert await resp.json() == {"ok": True, "poolOptIn": False}
    me = await (await call(api, "GET", "/api/openai/auth/me", cookie)).json()
    assert me["poolOptIn"] is False
    assert me["limits"]["hourlyRemaining"] is None and me["limits"]["limitsStale"] is None
    assert me["poolEligible"] is False and me["poolIneligibleReason"] == "no_key"
    resp = await call(api, "POST", "/api/openai/pool/opt-in", cookie, json={"optIn": "no"})
    await assert_openai_error(resp, 400, "invalid_request")


async def test_bad_bodies_get_openai_400s(api: Any) -> None:
    cookie = await new_portal_user(api, "liam")
    admin = await admin_login(api)
    cases = [
        ("/api/auth/login", None, b"{not json", "invalid_json"),
        ("/api/auth/login", None, b"[1, 2]", "invalid_json"),
        ("/api/auth/login", None, b"", "invalid_json"),
        (
            "/api/auth/login",
            None,
            json.dumps({"username": 1, "password": "x"}).encode(),
            "invalid_request",
        ),
        (
            "/api/openai/auth/login",
            None,
            json.dumps({"username": "liam"}).encode(),
            "invalid_request",
        ),
        ("/api/openai/auth/register", None, b"{", "invalid_json"),
        ("/api/openai/keys/rotate", cookie, b"{", "invalid_json"),
        ("/api/openai/keys/rotate", cookie, json.dumps({"label": 5}).encode(), None),
        ("/api/openai/pool/opt-in", cookie, b"{}", "invalid_request"),
        (
            "/api/admin/openai-users/delete",
            admin,
            json.dumps({"username": ["x"]}).encode(),
            "invalid_username",
        ),
        (
            "/api/admin/openai-users/rotate-master-key",
            admin,
            json.dumps({"label": 7}).encode(),
            None,
        ),
    ]
    for path, who, raw, code in cases:
        resp = await call(
            api, "POST", path, who, data=raw, headers={"Content-Type": "application/json"}
        )
        await assert_openai_error(resp, 400, code)
    resp = await call(
        api,
        "POST",
        "/api/auth/login",
        data=b"a=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await assert_openai_error(resp, 415, "unsupported_media_type")
    resp = await call(api, "GET", "/api/admin/audit?limit=abc", admin)
    await assert_openai_error(resp, 400, "invalid_request")


async def test_audit_rows(api: Any) -> None:
    await call(
        api, "POST", "/api/auth/login", json={"username": "admin", "password": "bad-bad-bad"}
    )
    admin = await admin_login(api)
    resp = await call(
        api,
        "POST",
        "/api/openai/auth/register",
        json={"username": "mia", "password": USER_PASSWORD},
    )
    cookie = session_cookie(resp)
    await call(
        api, "POST", "/api/openai/auth/login", json={"username": "mia", "password": "wrong-pw"}
    )
    await portal_login(api, "mia")
    key = await rotate_user_key(api, cookie)
    await call(api, "POST", "/api/admin/openai-users/reveal-key", admin, json={"username": "mia"})
    await call(api, "POST", "/api/admin/openai-users/rotate-master-key", admin)
    await call(api, "POST", "/api/openai/codex/unlink", cookie)
    await call(api, "POST", "/api/admin/openai-users/delete", admin, json={"username": "mia"})
    resp = await call(api, "GET", "/api/admin/audit?limit=50", admin)
    rows = (await resp.json())["data"]
    actions = [r["action"] for r in reversed(rows)]
    assert actions == [
        "admin.login_failed",
        "admin.login",
        "user.register",
        "user.login_failed",
        "user.login",
        "key.rotate",
        "key.reveal",
        "master_key.rotate",
        "device.unlink",
        "user.delete",
    ]
    assert set(rows[0]) == {"id", "ts", "actor", "action", "target", "detail", "ip"}
    assert rows[0]["actor"] == "admin" and rows[0]["target"] == "mia"
    assert rows[0]["ip"] == "127.0.0.1"
    dump = json.dumps(rows)
    for secret in (key, USER_PASSWORD, ADMIN_PASSWORD, "wrong-pw", "bad-bad-bad"):
        assert secret not in dump
    resp = await call(api, "GET", "/api/admin/audit?limit=2", admin)
    assert len((await resp.json())["data"]) == 2


async def test_execute_session_auth_and_linking(api: Any) -> None:
    resp = await call(api, "POST", "/api/openai/codex/execute-session", json={"prompt": "hi"})
    await assert_openai_error(resp, 401, "authentication_required")
    resp = await call(
        api,
        "POST",
        "/api/openai/codex/execute-session",
        json={"prompt": "hi"},
        headers={"Authorization": "Bearer sk-test-wrong"},
    )
    await assert_openai_error(resp, 401, "invalid_api_key")
    cookie = await new_portal_user(api, "noah")
    resp = await call(
        api, "POST", "/api/openai/codex/execute-session", cookie, json={"prompt": "hi"}
    )
    await assert_openai_error(resp, 403, "account_not_linked")
    key = await rotate_user_key(api, cookie)
    resp = await call(
        api,
        "POST",
        "/api/openai/codex/execute-session",
        json={"prompt": "hi"},
        headers={"Authorization": f"Bearer {key}", "Origin": "http://evil.example"},
    )
    await assert_openai_error(resp, 403, "account_not_linked")  # API keys skip the CSRF check


async def test_logs_carry_no_secrets(api: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    resp = await call(
        api,
        "POST",
        "/api/openai/auth/register",
        json={"username": "olga", "password": USER_PASSWORD},
    )
    cookie = session_cookie(resp)
    await call(
        api, "POST", "/api/openai/auth/login", json={"username": "olga", "password": "guess-guess"}
    )
    admin = await admin_login(api)
    key = await rotate_user_key(api, cookie)
    await models_status(api, key)
    resp = await call(
        api, "POST", "/api/admin/openai-users/reveal-key", admin, json={"username": "olga"}
    )
    assert (await resp.json())["key"] == key
    master = (
        await (await call(api, "POST", "/api/admin/openai-users/rotate-master-key", admin)).json()
    )["key"]
    await models_status(api, master)
    await call(api, "POST", "/api/admin/openai-users/delete", admin, json={"username": "olga"})
    text = caplog.text
    assert "audit:" in text  # the events were logged, just without their secrets
    for secret in (USER_PASSWORD, ADMIN_PASSWORD, "guess-guess", key, master, cookie, admin):
        assert secret not in text


KEY_FIELDS = (
    "hasKey",
    "keyLabel",
    "keyHint",
    "keyCreatedAt",
    "keyLastUsedAt",
    "keyLimits",
    "keyUsageToday",
)


async def test_admin_table_portal_and_master_key_show_one_key_summary(api: Any) -> None:
    """Issue 15 item 4: one key_summary() behind the admin table's rows, the portal's own view
    and the master key's summary: the same key reads the same in every panel."""
    admin = await admin_login(api)
    portal = await new_portal_user(api, "kim")
    await rotate_user_key(api, portal, label="laptop")
    # Chat requests set it (the usage writer); here directly.
    await api.app[STORE].execute("UPDATE api_keys SET last_used_at = 1700000000.5")
    me = await (await call(api, "GET", "/api/openai/auth/me", portal)).json()
    table = await (await call(api, "GET", "/api/admin/openai-users", admin)).json()
    (row,) = [r for r in table["users"] if r["username"] == "kim"]
    assert {k: row[k] for k in KEY_FIELDS} == {k: me[k] for k in KEY_FIELDS}
    assert row["keyLabel"] == "laptop" and row["keyLastUsedAt"] == 1700000000.5
    resp = await call(
        api, "POST", "/api/admin/openai-users/rotate-master-key", admin, json={"label": "ops"}
    )
    assert resp.status == 200
    await api.app[STORE].execute("UPDATE api_keys SET last_used_at = 1700000001.5")
    table = await (await call(api, "GET", "/api/admin/openai-users", admin)).json()
    master = table["masterKey"]
    assert set(master) == {"exists"} | {k[3].lower() + k[4:] for k in KEY_FIELDS[1:]}
    assert master["exists"] and master["label"] == "ops" and master["lastUsedAt"] == 1700000001.5
    # A user without a key: the same shape, empty.
    await make_user(api, "lee")
    table = await (await call(api, "GET", "/api/admin/openai-users", admin)).json()
    (row,) = [r for r in table["users"] if r["username"] == "lee"]
    assert not row["hasKey"] and row["keyLastUsedAt"] is None and row["keyHint"] is None
