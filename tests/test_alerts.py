"""Operator alerts: each condition alerts once while it lasts (pure checks over real state
objects), and end to end: the real server, real codex and the fake backend raise a quota,
pool-exhausted, pool-recovered and crash-loop alert that a loopback webhook receiver gets,
after a failed first delivery is retried."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from codexpool.account_limits import Limits
from codexpool.alerts import Alerts, PoolState, conditions
from codexpool.selection import Cooldown, PoolView
from codexpool.testing.fake_backend import codex_overrides
from tests.conftest import ADMIN_PASSWORD, codex_children
from tests.e2e_helpers import link_user


def view(eligible: tuple[int, ...], reasons: dict[int, str], members: int = 2) -> PoolView:
    return PoolView(eligible, reasons, members, (), None, float("inf"))


def state(now: float, **kw: Any) -> PoolState:
    base: dict[str, Any] = {
        "now": now,
        "view": view((1, 2), {}),
        "names": {1: "ivy", 2: "jon"},
        "cooldowns": {},
        "limits": {},
        "crashes": [],
        "db_failing_since": None,
    }
    return PoolState(**{**base, **kw})


def limits(hourly: float, weekly: float, h_reset: int, w_reset: int) -> Limits:
    return Limits(hourly, 300, h_reset, weekly, 10080, w_reset, "plus", 0.0)


def test_each_condition_alerts_once_while_it_lasts() -> None:
    alerts = Alerts("", "https://panel.example/", 90, 60)
    now = 1_800_000_000.0
    assert alerts.check(state(now)) == []
    high = {1: limits(91, 40, int(now + 3600), int(now + 86400))}
    fired = alerts.check(state(now, limits=high))
    assert [(a.kind, a.account) for a in fired] == [("quota_threshold", "ivy")]
    assert "91% of its 5-hour quota" in fired[0].text and fired[0].state == "not_sent"
    assert alerts.check(state(now + 2, limits=high)) == []  # still true: no repeat
    # The next window crossing the threshold again is a new condition.
    later = {1: limits(95, 40, int(now + 20000), int(now + 86400))}
    assert [a.kind for a in alerts.check(state(now + 7200, limits=later))] == ["quota_threshold"]
    # A lost login, a crash loop and a busy database, each once.
    t = now + 7200
    lost = {2: Cooldown(t + 600, "unauthorized")}
    crashes = [(t - 500, "2"), (t - 100, "2"), (t - 1, "2"), (t - 1, "1")]
    busy = state(t, limits=later, cooldowns=lost, crashes=crashes, db_failing_since=t - 61)
    kinds = sorted(a.kind for a in alerts.check(busy))
    assert kinds == ["app_server_crash_loop", "database_busy", "login_invalid"]
    assert alerts.check(busy) == []
    # Two crashes in ten minutes are no loop; a database failing for 59 s is not yet busy.
    calm = state(t, crashes=crashes[1:3], db_failing_since=t - 59)
    assert conditions(calm, 90, 60) == []


def test_pool_exhausted_then_recovered() -> None:
    alerts = Alerts("", "", 90, 60)
    now = 1_800_000_000.0
    out = view((), {1: "hourly_exhausted", 2: "cooling_down"})
    fired = alerts.check(state(now, view=out))
    assert [a.kind for a in fired] == ["pool_exhausted"]
    assert alerts.check(state(now + 2, view=out)) == []
    back = alerts.check(state(now + 4, view=view((2,), {1: "hourly_exhausted"})))
    assert [a.kind for a in back] == ["pool_recovered"] and "1 account can" in back[0].text
    # A pool whose members were never read is not "exhausted".
    assert alerts.check(state(now, view=view((), {1: "limits_unknown"}))) == []
    assert [a["kind"] for a in alerts.report()["data"]] == ["pool_recovered", "pool_exhausted"]


class Receiver:
    """A loopback webhook receiver on its own thread: fails the first POST, then takes them."""

    def __init__(self, fail_first: int = 1) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            self.attempts += 1
            if self.attempts <= self.fail_first:
                return web.Response(status=500, text="not now")
            self.bodies.append(body)
            return web.Response(text="ok")

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/hook", hook)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def wait_for(self, event: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in list(self.bodies):
                if body["event"] == event:
                    return body
            time.sleep(0.1)
        raise AssertionError(f"no {event} alert; got {[b['event'] for b in self.bodies]}")

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()  # its self-pipe sockets, else a ResourceWarning later


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


def admin_get(server: Any, path: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    login = urllib.request.Request(
        server.url + "/api/auth/login",
        data=json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    opener.open(login, timeout=10).read()
    with opener.open(server.url + path, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.e2e
def test_alerts_reach_the_webhook(
    live_server_factory: Any, fake_backend: Any, codex_bin: str, tmp_path: Path, receiver: Any
) -> None:
    server = live_server_factory(
        start=False,
        codexConfigOverrides=codex_overrides(fake_backend.url),
        alertWebhookUrl=receiver.url,
        alertPanelUrl="https://panel.example/",
        openaiRateLimitCacheTtlMs=1000,
    )
    link_user(server, tmp_path, "alice", "acct_alert")
    resets = int(time.time()) + 3600
    fake_backend.set_usage(
        "acct_alert", primary_used=100, secondary_used=5, primary_resets_at=resets
    )
    server.start()
    # The first limit read finds alice out of 5-hour quota: a quota alert and an exhausted pool.
    quota = receiver.wait_for("quota_threshold")
    assert quota["account"] == "alice" and "100% of its 5-hour quota" in quota["text"]
    assert quota["text"] == quota["content"] and "https://panel.example/" in quota["text"]
    receiver.wait_for("pool_exhausted")
    assert receiver.attempts >= 3  # the first POST got a 500 and was retried
    # Quota comes back: the pool recovers, once.
    fake_backend.set_usage("acct_alert", primary_used=20)
    assert "can serve" in receiver.wait_for("pool_recovered")["text"]
    # The app-server dies three times within ten minutes: a crash loop.
    assert server.proc is not None
    for _ in range(3):
        deadline = time.monotonic() + 20
        pids: list[int] = []
        while time.monotonic() < deadline and not pids:
            pids = [p for p in codex_children(server.proc.pid) if _is_app_server(p)]
            time.sleep(0.1)
        assert pids, server.log()
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(1.5)  # the refresher's next read restarts it
    assert "crashed 3 times" in receiver.wait_for("app_server_crash_loop")["text"]
    time.sleep(2.5)  # a few more checks: nothing repeats
    events = [b["event"] for b in receiver.bodies]
    assert events.count("quota_threshold") == 1 and events.count("pool_exhausted") == 1
    listed = admin_get(server, "/api/admin/alerts")
    assert listed["webhookConfigured"] is True
    states = {a["kind"]: a for a in listed["data"]}
    assert all(a["state"] == "delivered" for a in listed["data"]), listed
    assert max(a["attempts"] for a in states.values()) >= 2


def _is_app_server(pid: int) -> bool:
    try:
        return b"app-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
