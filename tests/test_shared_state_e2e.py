"""Two real gateway processes on one database with sharedState: any node answers any request
with the same result (issue 18 item 2, docs/cluster-state.md).

Both nodes run `python -m codexpool serve` on their own loopback port over one data folder,
on one database (the SQLite file there, or a PostgreSQL database of a private cluster), the
real codex binary against the fake ChatGPT backend, driven with the openai SDK and the admin
and portal APIs. Each test checks something a node could only know from the other through the
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from codexpool.testing.fake_backend import codex_overrides
from tests.conftest import ADMIN_PASSWORD, SERVER_MARK, LiveServer
from tests.test_key_limits_e2e import refusal, set_limits
from tests.test_pool_e2e import Pool, admin_session, all_read, table, wait_table

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


class Nodes:
    """Two nodes over one data folder, with the pool's users seeded into its database."""

    def __init__(self, a: LiveServer, b: LiveServer, pool: Pool) -> None:
        self.a, self.b, self.pool = a, b, pool

    def client(self, node: LiveServer, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=node.api, api_key=key or self.pool.master, max_retries=0, timeout=60
        )

    def start(self) -> None:
        self.a.start()
        self.b.start()


@pytest.fixture(params=["sqlite", "postgres"])
def make_nodes(
    request: pytest.FixtureRequest,
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
):
    engine = {}
    if request.param == "postgres":
        engine = {"databaseUrl": request.getfixturevalue("pg_url")}

    async def factory(names: list[str], **settings: Any) -> Nodes:
        shared = tmp_path / "shared-data"
        common = {
            **engine,
            "codexConfigOverrides": codex_overrides(fake_backend.url),
            "logLevel": "info",
            "sharedState": True,
            "dataDir": str(shared),
            **settings,
        }
        a = live_server_factory(start=False, **common)
        b = live_server_factory(start=False, **common)
        pool = Pool(a, names)
        await pool.seed(tmp_path)
        return Nodes(a, b, pool)

    return factory


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> float:
    """Wait until `check()` holds; return how long it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def wait_upstream(fb: Any, account: str, before: int) -> None:
    async def arrived() -> bool:
        return fb.responses_count(account) > before

    await eventually(arrived, 20)


async def in_flight(admin: aiohttp.ClientSession, username: str) -> int:
    users = (await table(admin))["users"]
    return next(u for u in users if u["username"] == username)["keyUsageToday"]["inFlight"]


async def test_key_caps_hold_across_nodes(make_nodes: Any, fake_backend: Any) -> None:
    """concurrentRequests 1 and requestsPerDay 3 for one key, used through both nodes."""
    nodes = await make_nodes(["kcap"])
    fb, acct = fake_backend, nodes.pool.acct["kcap"]
    key = nodes.pool.keys["kcap"]
    nodes.start()
    async with (
        await admin_session(nodes.a) as admin_a,
        await admin_session(nodes.b) as admin_b,
        nodes.client(nodes.a, key) as on_a,
        nodes.client(nodes.b, key) as on_b,
    ):
        await set_limits(admin_a, username="kcap", concurrentRequests=1, requestsPerDay=3)
        fb.script(acct, fb.reply("slow one", delay_first_ms=1500))
        before = fb.responses_count(acct)
        slow = asyncio.create_task(on_a.chat.completions.create(model="codex", messages=HI))
        await wait_upstream(fb, acct, before)
        err = await refusal(
            on_b.chat.completions.create(model="codex", messages=HI),
            429,
            "key_concurrency_exceeded",
        )
        assert err.response.headers["retry-after"] == "1"
        assert await in_flight(admin_b, "kcap") == 1  # node B shows node A's running request
        assert (await slow).choices[0].message.content == "slow one"

        async def released() -> bool:
            return await in_flight(admin_b, "kcap") == 0

        await eventually(released)
        done = await on_b.chat.completions.create(model="codex", messages=HI)  # the 2nd today
        assert done.choices[0].message.content
        await on_a.chat.completions.create(model="codex", messages=HI)  # the 3rd, on node A
        for client in (on_b, on_a):  # the day's cap is reached on both nodes
            await refusal(
                client.chat.completions.create(model="codex", messages=HI),
                429,
                "key_requests_per_day_exceeded",
            )
        for admin in (admin_a, admin_b):
            users = (await table(admin))["users"]
            assert users[0]["keyUsageToday"]["requests"] == 3


def _kill_leftovers(mark: Path) -> None:
    """SIGKILL the codex processes a killed node left (found by the mark the test server
    gave its children)."""
    needle = f"{SERVER_MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle + b"\0" in environ + b"\0":
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


async def test_a_dead_nodes_slots_expire(make_nodes: Any, fake_backend: Any) -> None:
    """A node killed mid-request holds its key slot only until its lease ends."""
    nodes = await make_nodes(["kdead"], slotLeaseSeconds=3)
    fb, acct = fake_backend, nodes.pool.acct["kdead"]
    key = nodes.pool.keys["kdead"]
    nodes.start()
    async with (
        await admin_session(nodes.b) as admin_b,
        nodes.client(nodes.a, key) as on_a,
        nodes.client(nodes.b, key) as on_b,
    ):
        await set_limits(admin_b, username="kdead", concurrentRequests=1)
        fb.script(acct, fb.hang())
        before = fb.responses_count(acct)
        hanging = asyncio.create_task(on_a.chat.completions.create(model="codex", messages=HI))
        await wait_upstream(fb, acct, before)
        assert nodes.a.proc is not None
        nodes.a.proc.send_signal(signal.SIGKILL)
        nodes.a.proc.wait()
        killed = time.monotonic()
        _kill_leftovers(nodes.a.settings_path.parent)
        with pytest.raises(openai.APIConnectionError):
            await hanging
        # The dead node's slot still counts right after the kill ...
        await refusal(
            on_b.chat.completions.create(model="codex", messages=HI),
            429,
            "key_concurrency_exceeded",
        )
        fb.clear_script(acct)

        async def admitted() -> bool:
            try:
                await on_b.chat.completions.create(model="codex", messages=HI)
            except openai.RateLimitError as exc:
                assert exc.body["code"] == "key_concurrency_exceeded"
                return False
            return True

        # ... and no longer once its lease (3 s) ran out.
        await eventually(admitted, 10)
        assert time.monotonic() - killed < 8


async def test_a_conversation_continues_on_the_other_node(
    make_nodes: Any, fake_backend: Any
) -> None:
    """A master-key conversation answered on node A continues on its account from node B
    (B's own rotation would pick the other account), and so does a Responses answer."""
    nodes = await make_nodes(["cone", "ctwo"])
    fb, acct = fake_backend, nodes.pool.acct
    nodes.start()
    async with (
        await admin_session(nodes.b) as admin_b,
        nodes.client(nodes.a) as on_a,
        nodes.client(nodes.b) as on_b,
    ):
        await wait_table(admin_b, all_read)
        await on_a.chat.completions.create(model="codex", messages=HI)  # node A: on c1
        fb.script(acct["ctwo"], fb.reply("Noted: 42."))
        first = [{"role": "user", "content": "Remember 42."}]
        done = await on_a.chat.completions.create(model="codex", messages=first)  # on c2
        answer = done.choices[0].message.content
        assert answer == "Noted: 42."
        counts = {n: fb.responses_count(acct[n]) for n in ("cone", "ctwo")}
        follow_up = [
            *first,
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "What number?"},
        ]
        await on_b.chat.completions.create(model="codex", messages=follow_up)
        assert fb.responses_count(acct["ctwo"]) == counts["ctwo"] + 1  # the conversation's account
        assert fb.responses_count(acct["cone"]) == counts["cone"]
        # Responses API: an answer given on node A is continued by id on node B.
        answered = await on_a.responses.create(model="codex", input="Remember 7.")
        again = await on_b.responses.create(
            model="codex", input="What number?", previous_response_id=answered.id
        )
        assert again.output_text


async def test_invalidations_reach_the_other_node(make_nodes: Any, fake_backend: Any) -> None:
    """An admin logout, a rotated key and a deleted user on node A are honoured by node B
    within a second or two."""
    nodes = await make_nodes(["ivy", "gone"])
    nodes.start()
    jar = aiohttp.CookieJar(unsafe=True)  # loopback IP: kept only when unsafe
    async with aiohttp.ClientSession(nodes.a.url, cookie_jar=jar) as http_a:
        resp = await http_a.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert resp.status == 200
        cookie = resp.cookies["codexpool_session"].value
        headers = {"Cookie": f"codexpool_session={cookie}"}
        async with aiohttp.ClientSession(nodes.b.url, headers=headers) as http_b:
            assert (await http_b.get("/api/auth/me")).status == 200  # one cookie, both nodes
            # Keys: node B has served (and cached) the old key before node A rotates it.
            old_key = nodes.pool.keys["ivy"]
            async with nodes.client(nodes.b, old_key) as on_b:
                await on_b.models.list()
                nodes.a.cli("key", "rotate", "ivy")

                async def key_refused() -> bool:
                    try:
                        await on_b.models.list()
                    except openai.AuthenticationError:
                        return True
                    return False

                assert await eventually(key_refused, 3) < 2.5
            gone_key = nodes.pool.keys["gone"]
            async with nodes.client(nodes.b, gone_key) as on_b:
                await on_b.models.list()
                resp = await http_a.post(
                    "/api/admin/openai-users/delete", json={"username": "gone"}
                )
                assert resp.status == 200
                assert await eventually(key_refused, 3) < 2.5
            # Admin logout on node A ends the admin cookie on node B too.
            assert (await http_a.post("/api/auth/logout")).status == 200

            async def cookie_refused() -> bool:
                return (await http_b.get("/api/auth/me")).status == 401

            assert await eventually(cookie_refused, 3) < 2.5


async def test_a_cooldown_is_seen_by_the_other_node(make_nodes: Any, fake_backend: Any) -> None:
    """An account that hit its usage limit on node A is refused up front by node B."""
    nodes = await make_nodes(["cool"])
    fb, acct = fake_backend, nodes.pool.acct["cool"]
    key = nodes.pool.keys["cool"]
    resets = int(time.time()) + 2400
    nodes.start()
    async with (
        await admin_session(nodes.b) as admin_b,
        nodes.client(nodes.a, key) as on_a,
        nodes.client(nodes.b, key) as on_b,
    ):
        await wait_table(admin_b, all_read)
        fb.script(acct, fb.usage_limit(resets))
        with pytest.raises(openai.RateLimitError):
            await on_a.chat.completions.create(model="codex", messages=HI)
        upstream = fb.responses_count(acct)

        async def cooled() -> bool:
            users = (await table(admin_b))["users"]
            return users[0]["coolingDownReason"] == "usage_limit"

        assert await eventually(cooled, 3) < 2.5
        assert (await table(admin_b))["users"][0]["coolingDownUntil"] == resets
        err = await refusal(
            on_b.chat.completions.create(model="codex", messages=HI), 429, "account_exhausted"
        )
        assert str(resets) in err.body["message"]
        assert fb.responses_count(acct) == upstream  # node B never went upstream

        async def limits_merged() -> bool:  # the 429's rate-limit headers, pushed on node A
            return (await table(admin_b))["users"][0]["hourlyRemaining"] == 0.0

        await eventually(limits_merged, 6)


async def test_a_device_login_is_followed_and_cancelled_from_the_other_node(
    aiohttp_client: Any, make_settings: Callable[..., Any], codex_bin: str, fake_backend: Any
) -> None:
    """Two apps on one database (each its own port, so its own node id): a device login the
    real codex runs on node A shows on node B, is cancelled from B, restarted on B (which ends
    nothing on A) and seen linked from A."""
    from codexpool.app import create_app
    from codexpool.app_keys import DEVICE_LOGINS

    from .test_device_login_e2e import approver
    from .users_helpers import call, new_portal_user

    def node_settings() -> Any:
        return make_settings(
            sharedState=True,
            codexBin=codex_bin,
            testingLoginIssuer=fake_backend.url,
            codexConfigOverrides=codex_overrides(fake_backend.url),
        )

    jar = aiohttp.DummyCookieJar
    a = await aiohttp_client(create_app(node_settings()), cookie_jar=jar())
    b = await aiohttp_client(create_app(node_settings()), cookie_jar=jar())
    cookie = await new_portal_user(a, "devi")

    async def status(node: Any) -> dict[str, Any]:
        return await (await call(node, "GET", "/api/openai/codex/device/status", cookie)).json()

    started = await (await call(a, "POST", "/api/openai/codex/device/start", cookie)).json()
    assert started["state"] == "awaiting_user", started
    seen = await status(b)
    assert (seen["state"], seen["userCode"]) == ("awaiting_user", started["userCode"])
    cancelled = await (await call(b, "POST", "/api/openai/codex/device/cancel", cookie)).json()
    assert cancelled["state"] == "cancelled", cancelled
    assert a.app[DEVICE_LOGINS].running() == []  # node A's codex process ended
    assert (await status(a))["state"] == "cancelled"

    again = await (await call(b, "POST", "/api/openai/codex/device/start", cookie)).json()
    assert again["state"] == "awaiting_user", again
    control = approver(fake_backend)
    try:
        result = control(again["userCode"])
    except TypeError:
        result = control()
    if asyncio.iscoroutine(result):
        await result

    async def linked_on_a() -> bool:
        return (await status(a))["state"] == "linked"

    await eventually(linked_on_a, 30)
    assert (await status(b))["linked"] is True
