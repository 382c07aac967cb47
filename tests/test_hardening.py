"""Issue 14's attack review, replayed: each attack against the real app (real SQLite, HTTP over
loopback) and now refused. Sign-in throttling that cannot lock the owner out, the CSRF
exemption only for requests that a key authenticates, clean 400s for bodies codex cannot take,
and health details only for the operator."""

from __future__ import annotations

import io
import json
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest

from codexpool import users
from codexpool.app_keys import STORE
from codexpool.security import BCRYPT_ROUNDS, bcrypt_cost, dummy_hash, hash_password

from .conftest import ADMIN_PASSWORD
from .users_helpers import (
    USER_PASSWORD,
    admin_login,
    assert_openai_error,
    call,
    make_user,
    new_portal_user,
    rotate_user_key,
)

CHAT = "/api/openai/v1/chat/completions"
QUICK = "/api/openai/codex/execute-session"
EVIL = {"Origin": "http://evil.example"}


# --- item 3: sign-in throttling -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "username", "right"),
    [
        ("/api/auth/login", "admin", ADMIN_PASSWORD),
        ("/api/openai/auth/login", "dana", USER_PASSWORD),
    ],
)
async def test_failures_from_one_address_do_not_lock_out_another(
    api: Any, path: str, username: str, right: str
) -> None:
    """Five wrong passwords from 127.0.0.1 used to lock the owner out everywhere for 5
    minutes; the owner signing in from 127.0.0.2 must get in."""
    if username == "dana":
        await make_user(api, "dana")
    wrong = {"username": username, "password": "wrong-password"}
    for _ in range(6):
        resp = await call(api, "POST", path, json=wrong)
        assert resp.status in (401, 429)
    resp = await call(api, "POST", path, json={"username": username, "password": right})
    await assert_openai_error(resp, 429, "too_many_attempts")  # the guessing address waits
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as owner:
        resp = await owner.post(api.make_url(path), json={"username": username, "password": right})
        assert resp.status == 200, await resp.text()


async def test_unknown_usernames_cost_a_real_bcrypt_check(api: Any) -> None:
    """The dummy hash checked for unknown names had cost 4 against 12 (3 ms vs 299 ms: which
    usernames exist was plain to see). It must cost what a real user's hash costs."""
    assert bcrypt_cost(dummy_hash()) == BCRYPT_ROUNDS == bcrypt_cost(hash_password("x" * 8))
    assert bcrypt.checkpw(b"codexpool-timing-equaliser", dummy_hash())
    resp = await call(
        api,
        "POST",
        "/api/openai/auth/register",
        json={"username": "nora", "password": USER_PASSWORD},
    )
    assert resp.status == 201
    found = await users.get_password_hash(api.app[STORE], "nora")
    assert found is not None and found[1] is not None
    assert bcrypt_cost(found[1]) == bcrypt_cost(dummy_hash())


# --- item 4: CSRF exemption only for key-authenticated requests -----------------------------


async def test_an_authorization_header_does_not_open_cookie_routes_cross_site(api: Any) -> None:
    """A foreign origin with `Authorization: Basic ...` and the admin cookie revealed a user's
    key: a header that authenticates nothing must not skip the guard."""
    admin = await admin_login(api)
    user_cookie = await new_portal_user(api, "vic")
    key = await rotate_user_key(api, user_cookie)
    reveal = "/api/admin/openai-users/reveal-key"
    for extra in (
        {"Authorization": "Basic YWRtaW46eA=="},
        {"x-api-key": "anything"},
        {"Authorization": f"Bearer {key}"},  # a real key still does not open an admin route
        {"x-api-key": key},
    ):
        resp = await call(
            api, "POST", reveal, admin, json={"username": "vic"}, headers={**EVIL, **extra}
        )
        await assert_openai_error(resp, 403, "csrf_rejected")
        resp = await call(api, "POST", "/api/openai/keys/rotate", user_cookie, json={},
                          headers={**EVIL, **extra})  # fmt: skip
        await assert_openai_error(resp, 403, "csrf_rejected")
    # The quick test takes a key or a cookie: a wrong key with the cookie is refused as CSRF...
    body = {"prompt": "hi"}
    resp = await call(api, "POST", QUICK, user_cookie, json=body,
                      headers={**EVIL, "Authorization": "Bearer sk-test-wrong"})  # fmt: skip
    await assert_openai_error(resp, 403, "csrf_rejected")
    # ...while a valid key is what authenticates (its account is not linked: a 403 of its own).
    resp = await call(api, "POST", QUICK, json=body, headers={**EVIL, "x-api-key": key})
    await assert_openai_error(resp, 403, "account_not_linked")
    resp = await call(api, "POST", reveal, admin, json={"username": "vic"})
    assert resp.status == 200  # same-origin admin use is untouched


# --- item 7: clean errors for every input ---------------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/openai/auth/login"])
@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"username": ' + b"9" * 5000 + b', "password": "x"}', "username"),
        (b'{"username": "ad\\ud800min", "password": "x"}', "username"),
        (b'{"username": "admin", "password": "pass\\udfffword"}', "password"),
        (b'{"username": "admin", "password": {"\\ud800": 1}}', "password"),
    ],
)
async def test_odd_credentials_are_a_400_naming_the_field(
    api: Any, path: str, raw: bytes, param: str
) -> None:
    """A 5,000-digit integer or a lone surrogate in a sign-in was a 500 with a traceback."""
    resp = await api.post(path, data=io.BytesIO(raw), headers={"Content-Type": "application/json"})
    err = await assert_openai_error(resp, 400, "invalid_json")
    assert err["param"] == param


def _nested_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi \\ud800 there"}]}, "messages[0].content"),
        (
            {"response_format": {"type": "json_schema",
                                 "json_schema": {"name": "x", "schema": _nested_schema(200)}}},
            "response_format.json_schema.schema.properties",
        ),
    ],
)  # fmt: skip
async def test_bodies_codex_would_stall_on_are_refused_at_once(
    api: Any, extra: dict[str, Any], param: str
) -> None:
    """A lone surrogate in a prompt or a schema 400 levels deep waited 30 s for a 504 while
    holding a slot; now a 400 names the field before any account is touched."""
    key = await rotate_user_key(api, await new_portal_user(api, "sam"))
    payload = {"model": "codex", "messages": [{"role": "user", "content": "hi"}], **extra}
    raw = json.dumps(payload).replace("\\\\ud800", "\\ud800").encode()
    resp = await api.post(
        CHAT,
        data=io.BytesIO(raw),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    err = await assert_openai_error(resp, 400, "invalid_json")
    assert err["param"] == param
    # A schema of ordinary depth still passes the body check (and stops at the account).
    payload["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": _nested_schema(12)},
    }
    payload["messages"] = [{"role": "user", "content": "hi ✓"}]
    resp = await call(api, "POST", CHAT, json=payload, headers={"Authorization": f"Bearer {key}"})
    await assert_openai_error(resp, 403, "account_not_linked")


# --- item 10: health details only for the operator ----------------------------------------


@pytest.fixture
def metrics_settings(make_settings: Any) -> Any:
    return make_settings(metricsToken="m" * 32)


async def test_health_tells_strangers_only_status_and_readiness(
    aiohttp_client: Any, metrics_settings: Any
) -> None:
    """Anonymous callers learned the codex path, version and account counts."""
    from codexpool.app import create_app

    api = await aiohttp_client(create_app(metrics_settings), cookie_jar=aiohttp.DummyCookieJar())
    resp = await api.get("/api/health")
    body = await resp.json()
    assert set(body) == {"status", "ready"}, body
    for headers in (
        {"Authorization": "Bearer " + "m" * 32},
        {"Cookie": f"codexpool_session={await admin_login(api)}"},
    ):
        resp = await api.get("/api/health", headers=headers)
        body = await resp.json()
        assert {"version", "codex", "accounts", "database", "codexProcesses"} <= set(body)
        assert body["accounts"] == {"linked": 0, "eligible": 0}
    resp = await api.get("/api/health", headers={"Authorization": "Bearer wrong"})
    assert set(await resp.json()) == {"status", "ready"}


def _post(url: str, raw: bytes) -> int:
    request = urllib.request.Request(
        url, data=raw, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_newline_in_a_login_name_cannot_forge_a_log_line(live_server_factory: Any) -> None:
    """A newline in a sign-in name wrote a second, forged audit line into the server log; a
    5,000-digit integer or a lone surrogate wrote a traceback (33 lines each)."""
    server = live_server_factory()
    forged = "INFO codexpool.audit: admin admin.login admin (10.9.8.7)"
    name = json.dumps("mallory\x1b[2J\n" + forged)
    url = server.url + "/api/openai/auth/login"
    assert _post(url, b'{"username": %s, "password": "wrong-one"}' % name.encode()) == 401
    assert _post(url, b'{"username": ' + b"7" * 5000 + b', "password": "x"}') == 400
    assert _post(url, b'{"username": "a\\udc00b", "password": "x"}') == 400
    assert server.stop() == 0
    log = server.log()
    lines = log.splitlines()
    assert not any(line.lower().startswith(forged.lower()) for line in lines), log
    assert any("mallory\\x1b[2j\\ninfo codexpool.audit" in line for line in lines), log
    assert "\x1b" not in log and "Traceback" not in log, log


def _loose(path: Path) -> list[str]:
    """Return the files and folders under `path` (itself included) that group or others may
    read, write or enter."""
    found = [path, *path.rglob("*")]
    return [f"{p} {oct(stat.S_IMODE(p.lstat().st_mode))}" for p in found
            if not p.is_symlink() and p.lstat().st_mode & 0o077]  # fmt: skip


def test_files_are_private_whatever_the_callers_umask(live_server_factory: Any) -> None:
    """Started by scripts/start.sh with umask 022, data/ was 0755 and the database 0644."""
    previous = os.umask(0o022)  # the caller's umask: the data folder is made 0755 with it
    try:
        server = live_server_factory(start=False)
        data = server.settings.data_path
        (data / "settings.json").chmod(0o600)  # the operator's file, not the server's
        assert stat.S_IMODE(data.stat().st_mode) == 0o755
        server.start()
    finally:
        os.umask(previous)
    raw = json.dumps({"username": "umasked", "password": "portal-password-1"}).encode()
    assert _post(server.url + "/api/openai/auth/register", raw) == 201
    db = server.settings.db_path
    assert db.exists() and Path(f"{db}-wal").exists()
    server.log_path.chmod(0o600)  # written by the test, not the server
    assert _loose(data) == []
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
