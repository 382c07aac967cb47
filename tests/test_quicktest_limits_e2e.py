"""The portal's quick test under the user's own key caps (issue 14 item 5), end to end: the
real server, the real codex binary and the fake ChatGPT backend.

With a portal cookie, `execute-session` ignored the key's allowed models and requests per day
and counted nowhere, so the cookie was a way around every cap the admin set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from codexpool.testing.fake_backend import codex_overrides, make_auth_json
from tests.test_key_limits_e2e import set_limits
from tests.test_pool_e2e import admin_session
from tests.users_helpers import USER_PASSWORD

pytestmark = pytest.mark.e2e
QUICK = "/api/openai/codex/execute-session"


async def test_the_portal_quick_test_obeys_and_counts_against_the_users_key(
    live_server_factory: Any, fake_backend: Any, codex_bin: str, tmp_path: Path
) -> None:
    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url)
    )
    server.cli("user", "add", "quin", "--password", USER_PASSWORD)
    auth = tmp_path / "quin-auth.json"
    auth.write_text(json.dumps(make_auth_json("acct_quin", "quin@example.com")))
    server.cli("link", "import", "quin", "--auth-json", str(auth))
    server.cli("key", "rotate", "quin")
    fake_backend.set_usage("acct_quin", primary_used=10, secondary_used=5)
    fake_backend.set_default_delay(0)
    server.start()
    admin = await admin_session(server)
    portal = aiohttp.ClientSession(server.url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with admin, portal:
        resp = await portal.post(
            "/api/openai/auth/login", json={"username": "quin", "password": USER_PASSWORD}
        )
        assert resp.status == 200, await resp.text()

        await set_limits(admin, username="quin", allowedModels=["gpt-5.5"])
        resp = await portal.post(QUICK, json={"prompt": "hi", "model": "codex"})
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["error"]["code"] == "model_not_allowed"

        await set_limits(admin, username="quin", requestsPerDay=1)
        fake_backend.script("acct_quin", fake_backend.reply("fine"))
        resp = await portal.post(QUICK, json={"prompt": "hi"})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["choices"][0]["message"]["content"] == "fine"
        me = await (await portal.get("/api/openai/auth/me")).json()
        assert me["keyUsageToday"]["requests"] == 1  # counted against the user's key

        before = fake_backend.responses_count("acct_quin")
        resp = await portal.post(QUICK, json={"prompt": "again"})
        assert resp.status == 429, await resp.text()
        assert (await resp.json())["error"]["code"] == "key_requests_per_day_exceeded"
        assert fake_backend.responses_count("acct_quin") == before  # refused before codex
