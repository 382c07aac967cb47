"""Device login with the REAL codex binary against the fake ChatGPT auth server.

The fake is reached through codex's hidden `--experimental_issuer` flag (enabled only by the
test-only `testingLoginIssuer` setting) and `chatgpt_base_url` passed as `-c`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from codexpool import linking
from codexpool.app_keys import STORE
from codexpool.config import Settings

from .users_helpers import call, new_portal_user

fake_module = pytest.importorskip("codexpool.testing.fake_backend")
pytestmark = pytest.mark.e2e


def approver(fb: Any) -> Callable[..., Any]:
    """Return the fake's device-approval control."""
    for name in ("approve_device", "approve", "approve_device_code"):
        control = getattr(fb, name, None)
        if callable(control):
            return control
    pytest.skip("FakeBackend exposes no device-approval control this test knows")


async def test_real_codex_device_login(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    codex_bin: str,
    fake_backend: Any,
) -> None:
    from codexpool.app import create_app

    settings = make_settings(
        codexBin=codex_bin,
        testingLoginIssuer=fake_backend.url,
        codexConfigOverrides=list(fake_module.codex_overrides(fake_backend.url)),
    )
    api = await aiohttp_client(create_app(settings), cookie_jar=aiohttp.DummyCookieJar())
    cookie = await new_portal_user(api, "real")
    started = await (await call(api, "POST", "/api/openai/codex/device/start", cookie)).json()
    assert started["state"] == "awaiting_user", started
    assert started["verificationUrl"].startswith(fake_backend.url)
    assert started["verificationUrl"].endswith("/codex/device")
    assert started["userCode"]
    control = approver(fake_backend)
    try:
        result = control(started["userCode"])
    except TypeError:
        result = control()
    if asyncio.iscoroutine(result):
        await result
    deadline = time.monotonic() + 30
    status = started
    while time.monotonic() < deadline and status["state"] == "awaiting_user":
        await asyncio.sleep(0.2)
        status = await (await call(api, "GET", "/api/openai/codex/device/status", cookie)).json()
    assert status["state"] == "linked", status
    user_id = (await api.app[STORE].fetchone("SELECT id FROM users WHERE username='real'"))["id"]
    home = linking.codex_home(settings, user_id)
    assert (home / "auth.json").is_file() and linking.is_linked(home)
    for line in status["logs"]:
        assert "eyJ" not in line  # no token reaches the portal
    resp = await call(api, "POST", "/api/openai/codex/unlink", cookie)
    assert (await resp.json())["wasLinked"] is True
    assert not (home / "auth.json").exists()
