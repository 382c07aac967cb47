"""Device linking over HTTP with a fast fake `codex` executable (the e2e test uses the real one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from codexpool.config import Settings

from .test_device_login_unit import FAKE_CODEX, REAL_OUTPUT
from .users_helpers import admin_login, assert_openai_error, call, new_portal_user


@pytest.fixture
async def fake_api(
    aiohttp_client: Any, make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: Any
) -> Any:
    """Return a client whose codexBin is the fake codex script."""
    from codexpool.app import create_app

    script = tmp_path / "fake-codex"
    script.write_text(FAKE_CODEX)
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_OUTPUT", REAL_OUTPUT)  # read by the fake child only
    settings = make_settings(codexBin=str(script))
    return await aiohttp_client(create_app(settings), cookie_jar=aiohttp.DummyCookieJar())


async def poll_status(api: Any, cookie: str, states: set[str], within: float = 10) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = await (await call(api, "GET", "/api/openai/codex/device/status", cookie)).json()
        if status["state"] in states:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"device state stayed {status['state']}")


async def test_device_link_and_unlink(fake_api: Any) -> None:
    cookie = await new_portal_user(fake_api, "pia")
    status = await (await call(fake_api, "GET", "/api/openai/codex/device/status", cookie)).json()
    assert status["state"] == "idle" and status["linked"] is False
    resp = await call(fake_api, "POST", "/api/openai/codex/device/start", cookie)
    started = await resp.json()
    assert started["state"] in {"awaiting_user", "linked"}
    assert started["verificationUrl"] == "http://127.0.0.1:18555/codex/device"
    assert started["userCode"] == "FAKE-1234"
    final = await poll_status(fake_api, cookie, {"linked", "failed"})
    assert final["state"] == "linked" and final["linked"] is True
    me = await (await call(fake_api, "GET", "/api/openai/auth/me", cookie)).json()
    assert me["linked"] is True and me["device"]["state"] == "linked"
    resp = await call(fake_api, "POST", "/api/openai/codex/unlink", cookie)
    assert await resp.json() == {"ok": True, "linked": False, "wasLinked": True}
    me = await (await call(fake_api, "GET", "/api/openai/auth/me", cookie)).json()
    assert me["linked"] is False and me["device"]["state"] == "idle"
    admin = await admin_login(fake_api)
    rows = (await (await call(fake_api, "GET", "/api/admin/audit", admin)).json())["data"]
    assert [r["action"] for r in rows[1:4]] == ["device.unlink", "device.linked", "device.start"]


async def test_device_cancel_and_restart(fake_api: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("FAKE_MODE", "hang")
    cookie = await new_portal_user(fake_api, "quinn")
    first = await (await call(fake_api, "POST", "/api/openai/codex/device/start", cookie)).json()
    assert first["state"] == "awaiting_user"
    second = await (await call(fake_api, "POST", "/api/openai/codex/device/start", cookie)).json()
    assert second["state"] == "awaiting_user" and second["startedAt"] >= first["startedAt"]
    resp = await call(fake_api, "POST", "/api/openai/codex/device/cancel", cookie)
    cancelled = await resp.json()
    assert cancelled["state"] == "cancelled" and cancelled["linked"] is False
    # App shutdown (the fixture's teardown) must also end a flow left running.
    await call(fake_api, "POST", "/api/openai/codex/device/start", cookie)


async def test_device_missing_codex_binary(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    from codexpool.app import create_app

    api = await aiohttp_client(
        create_app(make_settings(codexBin="/nonexistent/codex")),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    cookie = await new_portal_user(api, "rita")
    status = await (await call(api, "POST", "/api/openai/codex/device/start", cookie)).json()
    assert status["state"] == "failed"
    assert "codex CLI is not installed" in status["error"]


async def test_device_routes_reject_cross_site(fake_api: Any) -> None:
    cookie = await new_portal_user(fake_api, "sam")
    for path in ("/api/openai/codex/device/start", "/api/openai/codex/unlink"):
        resp = await call(
            fake_api, "POST", path, cookie, headers={"Origin": "https://evil.example"}
        )
        await assert_openai_error(resp, 403, "csrf_rejected")


def _login_processes(script: Path) -> list[int]:
    """Return the live fake `codex login` processes (children of this test process)."""
    import os

    from .conftest import proc_table

    found = []
    for pid, _, state, parent, _ in proc_table():
        if parent != os.getpid() or state == "Z":
            continue
        try:
            if str(script).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


async def test_device_logins_are_bounded_in_the_gateway(
    aiohttp_client: Any, make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: Any
) -> None:
    """At most maxDeviceLogins flows (each a codex process) run at once: throwaway users
    starting more get 429 device_logins_busy with Retry-After and start no process (60
    registrations once started 60 login processes, 3.1 GiB); a user restarting their own
    flow still can, and a cancelled flow frees its place."""
    from codexpool.app import create_app

    script = tmp_path / "fake-codex"
    script.write_text(FAKE_CODEX)
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_OUTPUT", REAL_OUTPUT)
    monkeypatch.setenv("FAKE_MODE", "hang")
    settings = make_settings(codexBin=str(script), maxDeviceLogins=2)
    api = await aiohttp_client(create_app(settings), cookie_jar=aiohttp.DummyCookieJar())
    cookies = [await new_portal_user(api, f"throwaway{i}") for i in range(4)]
    start = "/api/openai/codex/device/start"
    for cookie in cookies[:2]:
        status = await (await call(api, "POST", start, cookie)).json()
        assert status["state"] == "awaiting_user"
    for cookie in cookies[2:]:
        resp = await call(api, "POST", start, cookie)
        await assert_openai_error(resp, 429, "device_logins_busy")
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        status = await (await call(api, "GET", "/api/openai/codex/device/status", cookie)).json()
        assert status["state"] == "idle"
    assert len(_login_processes(script)) == 2
    # One per user: a restart replaces the user's own flow, it does not need a new place.
    restarted = await (await call(api, "POST", start, cookies[0])).json()
    assert restarted["state"] == "awaiting_user"
    assert len(_login_processes(script)) == 2
    await call(api, "POST", "/api/openai/codex/device/cancel", cookies[1])
    status = await (await call(api, "POST", start, cookies[2])).json()
    assert status["state"] == "awaiting_user"
    assert len(_login_processes(script)) == 2
