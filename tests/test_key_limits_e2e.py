"""Per-key limits end to end: the official openai SDK against the real server and the real codex
binary (fake ChatGPT backend); each cap answers from the gateway with the right status, code
and Retry-After, and the day's count survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from codexpool.testing.fake_backend import codex_overrides
from tests.conftest import LiveServer, async_openai
from tests.e2e_helpers import link_user
from tests.test_pool_e2e import admin_session

pytestmark = pytest.mark.e2e
LIMITS_PATH = "/api/admin/openai-users/key-limits"
HI = [{"role": "user", "content": "hi"}]


async def set_limits(admin: aiohttp.ClientSession, **body: Any) -> dict[str, Any]:
    resp = await admin.post(LIMITS_PATH, json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def refusal(call: Any, status: int, code: str) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        await call
    err = info.value
    assert (err.status_code, err.body["code"]) == (status, code), err.body
    assert err.body["source"] == "gateway"
    assert err.response.headers["x-codexpool-error-source"] == "gateway"
    return err


@pytest.fixture
def server(live_server_factory: Any, fake_backend: Any, codex_bin: str, tmp_path: Path):
    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url)
    )
    server.key = link_user(server, tmp_path, "kim", "acct_kim")  # type: ignore[attr-defined]
    server.master = server.cli("key", "rotate", "--master").stdout.strip()  # type: ignore[attr-defined]
    fake_backend.set_usage("acct_kim", primary_used=10, secondary_used=5)
    server.start()
    return server


async def test_each_cap_through_the_sdk(server: LiveServer, fake_backend: Any) -> None:
    fake_backend.set_default_delay(0)
    client = async_openai(server, server.key)  # type: ignore[attr-defined]
    admin = await admin_session(server)
    async with client, admin:
        # Allowed models: other models are refused (403) and hidden from the model list.
        await set_limits(admin, username="kim", allowedModels=["gpt-5.5"])
        models = [m.id async for m in client.models.list()]
        assert models == ["gpt-5.5"]
        err = await refusal(
            client.chat.completions.create(model="codex", messages=HI), 403, "model_not_allowed"
        )
        assert isinstance(err, openai.PermissionDeniedError)
        fake_backend.script("acct_kim", fake_backend.reply("fine"))
        done = await client.chat.completions.create(model="gpt-5.5", messages=HI)
        assert done.choices[0].message.content == "fine"

        # Concurrency: while one slow stream runs, a second request is refused at once.
        await set_limits(admin, username="kim", concurrentRequests=1)
        before = fake_backend.responses_count("acct_kim")
        fake_backend.script("acct_kim", fake_backend.reply("slow one", delay_first_ms=1500))
        slow = asyncio.create_task(
            client.chat.completions.create(model="gpt-5.5", messages=HI, stream=False)
        )
        for _ in range(200):
            if fake_backend.responses_count("acct_kim") > before:
                break
            await asyncio.sleep(0.02)
        err = await refusal(
            client.chat.completions.create(model="gpt-5.5", messages=HI, stream=True),
            429,
            "key_concurrency_exceeded",
        )
        assert isinstance(err, openai.RateLimitError)
        assert err.response.headers["retry-after"] == "1"
        assert (await slow).choices[0].message.content == "slow one"
        fake_backend.script("acct_kim", fake_backend.reply("after"))
        done = await client.chat.completions.create(model="gpt-5.5", messages=HI)
        assert done.choices[0].message.content == "after"

        # Requests per day: counted per key slot, refused requests count for nothing.
        use = (await set_limits(admin, username="kim", requestsPerDay=4))["usageToday"]
        assert use["requests"] == 3 and use["inFlight"] == 0 and use["tokens"] > 0
        fake_backend.script("acct_kim", fake_backend.reply("fourth"))
        await client.chat.completions.create(model="codex", messages=HI)
        err = await refusal(
            client.chat.completions.create(model="codex", messages=HI),
            429,
            "key_requests_per_day_exceeded",
        )
        assert 0 < int(err.response.headers["retry-after"]) <= 86_400

        # Tokens per day: the tokens of finished requests count.
        await set_limits(admin, username="kim", tokensPerDay=use["tokens"])
        await refusal(
            client.responses.create(model="codex", input="hi"),
            429,
            "key_tokens_per_day_exceeded",
        )

        # The master key has its own slot and limits.
        master = async_openai(server, server.master)  # type: ignore[attr-defined]
        async with master:
            await set_limits(admin, master=True, requestsPerDay=0)
            await refusal(
                master.chat.completions.create(model="codex", messages=HI),
                429,
                "key_requests_per_day_exceeded",
            )
        table = await (await admin.get("/api/admin/openai-users")).json()
        assert table["users"][0]["keyUsageToday"]["requests"] == 4
        assert table["masterKey"]["limits"]["requestsPerDay"] == 0
        assert table["masterKey"]["usageToday"]["requests"] == 0


async def test_days_count_survives_restart_and_rotation(
    server: LiveServer, fake_backend: Any
) -> None:
    admin = await admin_session(server)
    async with admin:
        await set_limits(admin, username="kim", requestsPerDay=2)
    fake_backend.script("acct_kim", fake_backend.reply("one"), fake_backend.reply("two"))
    async with async_openai(server, server.key) as c:  # type: ignore[attr-defined]
        for _ in range(2):
            await c.chat.completions.create(model="codex", messages=HI)
    server.stop()
    new_key = server.cli("key", "rotate", "kim").stdout.strip()
    server.start()
    async with async_openai(server, new_key) as c:
        await refusal(
            c.chat.completions.create(model="codex", messages=HI),
            429,
            "key_requests_per_day_exceeded",
        )
