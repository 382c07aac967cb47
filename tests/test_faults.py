"""Faults, each ending with a clear error to the client, nothing acknowledged lost and no codex
process left over (the live-server fixture checks /proc after every test).

Covered elsewhere and not repeated here: SIGKILL of the app-server mid-stream
(test_chat_e2e.test_app_server_killed_mid_stream), a hanging backend before the first byte
(test_deadline_gives_timeout), 500 and 429 from the backend (test_usage_limit_and_upstream_errors,
test_pool_e2e failover), the client vanishing mid-stream (test_client_disconnect_interrupts_turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from codexpool.testing.fake_backend import codex_overrides
from tests.conftest import ADMIN_PASSWORD, LiveServer, _child_env, async_openai, write_settings
from tests.e2e_helpers import link_user
from tests.e2e_helpers import usage_rows as request_rows

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server(live_server_factory: Any, fake_backend: Any, codex_bin: str, tmp_path: Path):
    """A running server with one linked user ("faye" on fake account acct_faye)."""
    server = live_server_factory(
        start=False,
        codexConfigOverrides=codex_overrides(fake_backend.url),
        databaseBusyTimeoutMs=2000,
    )
    server.key = link_user(server, tmp_path, "faye", "acct_faye")  # type: ignore[attr-defined]
    fake_backend.set_usage("acct_faye", primary_used=10, secondary_used=5)
    fake_backend.set_default_delay(0)
    server.start()
    return server


def usage_rows(server: LiveServer) -> list[tuple]:
    return request_rows(server, "status, error_code")


def rows_eventually(server: LiveServer, want: int, within: float = 10) -> list[tuple]:
    """Return the usage rows once `want` are written (the writer batches for a moment)."""
    deadline = time.monotonic() + within
    rows = usage_rows(server)
    while len(rows) < want and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = usage_rows(server)
    return rows


def stream_text(client: openai.OpenAI, **kw: Any) -> str:
    stream = client.chat.completions.create(model="codex", messages=HI, stream=True, **kw)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_malformed_sse_before_any_text_is_a_clear_upstream_error(
    server: LiveServer, fake_backend: Any
):
    """Garbage instead of an answer: a real HTTP 502 from upstream (the test profile turns
    codex's own stream retries off, so the first bad stream is final), then service as usual."""
    fake_backend.script("acct_faye", {"kind": "malformed"})
    client = openai.OpenAI(base_url=server.api, api_key=server.key, max_retries=0)  # type: ignore[attr-defined]
    with client:
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="codex", messages=HI, stream=True)
        err = info.value
        assert err.status_code == 502, err.body
        assert err.body["code"] == "upstream_error" and err.body["source"] == "upstream"
        assert "stream" in err.body["message"]
        assert err.response.headers["x-codexpool-error-source"] == "upstream"
        fake_backend.script("acct_faye", fake_backend.reply("fine again"))
        assert stream_text(client) == "fine again"
    assert rows_eventually(server, 2) == [(502, "upstream_error"), (200, None)]


def test_malformed_sse_mid_answer_ends_the_stream_with_an_error(
    server: LiveServer, fake_backend: Any
):
    """Garbage after some text: the stream the client holds ends with an error event the SDK
    raises, never a silently truncated answer."""
    fake_backend.script("acct_faye", fake_backend.reply("a b c d e f", chunks=6, malformed_after=3))
    client = openai.OpenAI(base_url=server.api, api_key=server.key, max_retries=0)  # type: ignore[attr-defined]
    pieces: list[str] = []
    with client:
        with pytest.raises(openai.APIError) as info:
            for chunk in client.chat.completions.create(model="codex", messages=HI, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
        assert "".join(pieces) == "a b c "
        assert "stream" in info.value.message
        fake_backend.script("acct_faye", fake_backend.reply("next"))
        assert stream_text(client) == "next"


def test_mid_stream_upstream_failure_is_labelled_upstream_on_both_routes(
    server: LiveServer, fake_backend: Any
):
    """An upstream failure after the headers went out says it came from upstream, on chat
    chunks and on Responses events alike (the Responses stream used to label it "gateway"),
    and the Responses `error` event keeps its own `type` ("error", as OpenAI sends it)."""
    client = openai.OpenAI(base_url=server.api, api_key=server.key, max_retries=0)  # type: ignore[attr-defined]
    with client:
        fake_backend.script("acct_faye", fake_backend.reply("a b c d", chunks=4, malformed_after=2))
        with pytest.raises(openai.APIError) as info:
            for _ in client.chat.completions.create(model="codex", messages=HI, stream=True):
                pass
        assert info.value.body["source"] == "upstream", info.value.body  # type: ignore[index]
        assert info.value.body["code"] == "upstream_error"  # type: ignore[index]

        fake_backend.script("acct_faye", fake_backend.reply("a b c d", chunks=4, malformed_after=2))
        events = list(client.responses.create(model="codex", input="hi", stream=True))
        kinds = [e.type for e in events]
        assert "response.output_text.delta" in kinds and "response.completed" not in kinds
        error = events[-1].to_dict()
        assert error["source"] == "upstream" and error["code"] == "upstream_error", error
        assert error["type"] == "error", error
        assert "stream" in error["message"]
    assert rows_eventually(server, 2) == [(502, "upstream_error"), (502, "upstream_error")]


def test_backend_hangs_mid_answer_hits_the_deadline(server: LiveServer, fake_backend: Any):
    fake_backend.script("acct_faye", fake_backend.reply("abcdefgh", chunks=4, hang_after=2))
    client = openai.OpenAI(base_url=server.api, api_key=server.key, max_retries=0)  # type: ignore[attr-defined]
    pieces: list[str] = []
    started = time.monotonic()
    with client:
        with pytest.raises(openai.APIError) as info:
            stream = client.chat.completions.create(
                model="codex", messages=HI, stream=True, extra_body={"timeoutMs": 3000}
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
        assert time.monotonic() - started < 20
        assert "".join(pieces) == "abcd"
        assert info.value.body and info.value.body["code"] == "timeout"
        fake_backend.script("acct_faye", fake_backend.reply("after the hang"))
        assert stream_text(client) == "after the hang"
    for _ in range(50):
        if (504, "timeout") in usage_rows(server):
            break
        time.sleep(0.1)
    assert (504, "timeout") in usage_rows(server)


def test_read_only_data_folder_stops_start_with_one_line(tmp_path: Path) -> None:
    """A data folder that cannot be written (here a read-only bind mount over a folder that
    already holds a database) stops `serve` at once with one line naming it, not a traceback
    or a server that fails on its first write."""
    data = tmp_path / "data"
    settings = write_settings(data)
    base = [sys.executable, "-m", "codexpool", "--settings", str(settings)]
    subprocess.run([*base, "user", "add", "early"], check=True, env=_child_env(), timeout=60)
    if os.geteuid() == 0:  # root writes through file modes: make the mount itself read-only
        unshare = ["unshare", "--user", "--map-root-user", "--mount"]
        if not shutil.which("unshare") or subprocess.run([*unshare, "true"]).returncode:
            pytest.skip(
                "running as root without user namespaces: no way to make a folder read-only"
            )
        argv = [*unshare, "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(data)]
    else:
        data.chmod(0o555)
        argv = []
    try:
        proc = subprocess.run(
            [*argv, *base, "serve"], capture_output=True, text=True, env=_child_env(), timeout=60
        )
    finally:
        data.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"the data folder {data} is not writable" in lines[0]
    # Nothing was harmed: the database still holds the user and the gateway starts normally.
    listing = subprocess.run(
        [*base, "user", "add", "later"], capture_output=True, text=True, env=_child_env()
    )
    assert listing.returncode == 0, listing.stderr
    con = sqlite3.connect(data / "codexpool.sqlite3")
    try:
        assert [r[0] for r in con.execute("SELECT username FROM users ORDER BY id")] == [
            "early",
            "later",
        ]
    finally:
        con.close()


LOCK_HOLDER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN IMMEDIATE")  # the write lock, held until stdin closes
print("locked", flush=True)
sys.stdin.read()
con.execute("ROLLBACK")
"""


class LockHolder:
    """Another process holding the database's write lock until released."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        assert self.proc.stdout is not None
        self.proc.stdout.close()


async def wait_rows(server: LiveServer, want: int) -> list[tuple]:
    """rows_eventually off the event loop, for the async tests."""
    return await asyncio.to_thread(rows_eventually, server, want, 30)


async def test_database_locked_by_another_process(server: LiveServer, fake_backend: Any):
    """While another process holds the write lock: answers keep flowing (reads have their own
    connection and never queue behind a waiting write), admin writes get a clear 503, and the
    usage rows wait in memory, land once the lock is gone, or survive a shutdown in the spool
    file that the next start writes."""
    db = server.settings.db_path
    admin = aiohttp.ClientSession(server.url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    login = {"username": "admin", "password": ADMIN_PASSWORD}
    client = async_openai(server, server.key)  # type: ignore[attr-defined]
    async with admin, client:
        assert (await admin.post("/api/auth/login", json=login)).status == 200
        holder = LockHolder(db)
        for i in range(3):
            started = time.monotonic()
            fake_backend.script("acct_faye", fake_backend.reply(f"answer {i}"))
            done = await client.chat.completions.create(model="codex", messages=HI)
            assert done.choices[0].message.content == f"answer {i}"
            # The writes wait 2 s for the lock each time; the answers never queue behind them.
            assert time.monotonic() - started < 1.8
        resp = await admin.post("/api/admin/openai-users/rotate-master-key", json={})
        assert resp.status == 503
        body = await resp.json()
        assert body["error"]["code"] == "database_busy" and resp.headers["Retry-After"]
        assert usage_rows(server) == []  # still waiting in memory
        holder.release()
        assert len(await wait_rows(server, 3)) == 3
        resp = await admin.post("/api/admin/openai-users/rotate-master-key", json={})
        assert resp.status == 200

        # Locked again, then the gateway is stopped: the rows go to the spool file.
        holder = LockHolder(db)
        fake_backend.script("acct_faye", fake_backend.reply("before the restart"))
        done = await client.chat.completions.create(model="codex", messages=HI)
        assert done.choices[0].message.content == "before the restart"
    assert server.stop() == 0
    holder.release()
    spool = server.settings.data_path / "usage-spool.jsonl"
    assert len(spool.read_text().splitlines()) == 1
    assert len(usage_rows(server)) == 3
    server.start()
    rows = await wait_rows(server, 4)
    assert rows == [(200, None)] * 4
    assert not spool.exists()


async def test_restart_while_usage_rows_are_written(server: LiveServer, fake_backend: Any):
    """SIGTERM (a systemd restart) with 30 streams in flight: every answer the clients
    received in full has its usage row, every row is a clean outcome, and the restarted
    gateway serves."""
    fake_backend.set_default_delay(40)  # each answer streams for a while
    client = async_openai(server, server.key)  # type: ignore[attr-defined]

    started = 0
    all_started = asyncio.Event()

    async def one() -> str:
        nonlocal started
        stream = await client.chat.completions.create(model="codex", messages=HI, stream=True)
        started += 1  # the gateway accepted it and sent the headers: in flight
        if started == 30:
            all_started.set()
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async with client:
        tasks = [asyncio.create_task(one()) for _ in range(30)]
        # A fixed sleep raced the connections on a loaded machine: SIGTERM came before any
        # was accepted and every request failed to connect.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_started.wait(), 20)
        assert started > 0
        assert server.proc is not None
        server.proc.terminate()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    fake_backend.set_default_delay(0)
    assert server.proc.wait(timeout=60) == 0
    full = [r for r in results if isinstance(r, str) and r]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, openai.APIError) for e in failed), failed
    assert len(full) + len(failed) == 30 and full
    rows = usage_rows(server)
    assert sum(1 for status, _ in rows if status == 200) == len(full)
    assert {status for status, _ in rows} <= {200, 499, 503}
    server.start()
    sync = openai.OpenAI(base_url=server.api, api_key=server.key, max_retries=0)  # type: ignore[attr-defined]
    with sync:
        fake_backend.script("acct_faye", fake_backend.reply("back"))
        assert stream_text(sync) == "back"
