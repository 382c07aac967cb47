"""Accounts against the real server process: the newcomer's curl walk-through, in Python.

Also the device login with the REAL codex binary against the fake ChatGPT auth server (its
hidden `--experimental_issuer` flag, enabled by the test-only `testingLoginIssuer` setting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from .conftest import ADMIN_PASSWORD, LiveServer

pytestmark = [
    pytest.mark.e2e,
    # conftest's LiveServer.start leaves its log file handle open (reported to the lead);
    # that ResourceWarning is not this test's subject.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


async def _json(resp: aiohttp.ClientResponse) -> Any:
    return await resp.json(content_type=None)


async def test_live_server_account_lifecycle(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    server = live_server_factory()
    admin_jar, user_jar = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(server.url, cookie_jar=admin_jar) as admin,
        aiohttp.ClientSession(server.url, cookie_jar=user_jar) as user,
        aiohttp.ClientSession(server.url) as anon,
    ):
        resp = await admin.get("/api/admin/openai-users")
        assert resp.status == 401
        assert (await _json(resp))["error"]["message"] == "Authentication required"
        resp = await admin.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert resp.status == 200
        resp = await user.post(
            "/api/openai/auth/register", json={"username": "zoe", "password": "zoe-password"}
        )
        assert resp.status == 201
        # Identities stay apart across jars: the admin cookie does not open the portal.
        assert (await admin.get("/api/openai/auth/me")).status == 401
        assert (await user.get("/api/admin/openai-users")).status == 401
        key = (await _json(await user.post("/api/openai/keys/rotate", json={"label": "cli"})))[
            "key"
        ]
        auth = {"Authorization": f"Bearer {key}"}
        assert (await anon.get("/api/openai/v1/models", headers=auth)).status == 200
        revealed = await _json(
            await admin.post("/api/admin/openai-users/reveal-key", json={"username": "zoe"})
        )
        assert revealed["key"] == key
        table = await _json(await admin.get("/api/admin/openai-users"))
        assert [u["username"] for u in table["users"]] == ["zoe"]
        resp = await admin.post("/api/admin/openai-users/delete", json={"username": "zoe"})
        assert resp.status == 200
        assert (await user.get("/api/openai/auth/me")).status == 401
        assert (await anon.get("/api/openai/v1/models", headers=auth)).status == 401
    log = server.log()
    for secret in (key, "zoe-password", ADMIN_PASSWORD):
        assert secret not in log
