"""Several gateway nodes on one database (issue 18): real `codexpool serve` processes with the
real codex binary against the fake backend; accounts leased one node at a time, requests
forwarded to the owner, takeover after a SIGKILL, logins written back after a token refresh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from yarl import URL

from codexpool.security import KeyCipher
from codexpool.sessions import COOKIE_NAME
from tests.cluster_helpers import (
    balanced,
    db_path,
    db_rows,
    make_nodes,
    owners,
    runs,
    served_by,
    wait_until,
)
from tests.e2e_helpers import link_user
from tests.test_pool_e2e import admin_session

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "postgres"])
def cluster_db(request: pytest.FixtureRequest) -> str | None:
    """The nodes' shared database: None for one SQLite file, else a fresh PostgreSQL
    database's URL (the session's private cluster)."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


@contextlib.contextmanager
def database_outage(node: Any, url: str | None, pg: Any) -> Iterator[None]:
    """Take the database away from the nodes, then give it back: on SQLite another process
    holds its write lock; on PostgreSQL the server crashes and comes back (every connection
    ends, new ones are refused meanwhile)."""
    if url is None:
        lock = sqlite3.connect(db_path(node), timeout=5, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    pg.stop("immediate")  # a crash: every connection ends, new ones are refused
    try:
        yield
    finally:
        pg.start()


USERS = ("alice", "bobby", "carol", "dave")


def _client(node: Any, key: str, request: pytest.FixtureRequest) -> openai.OpenAI:
    client = openai.OpenAI(base_url=node.api, api_key=key, max_retries=0, timeout=60)
    request.addfinalizer(client.close)
    return client


def _chat(client: openai.OpenAI, text: str = "hi") -> str:
    out = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": text}]
    )
    return out.choices[0].message.content or ""


def test_two_nodes_split_the_accounts_and_forward_to_the_owner(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    cluster_db: str | None,
) -> None:
    fake_backend.clear()
    nodes, master = make_nodes(
        live_server_factory, fake_backend.url, database_url=cluster_db, count=2
    )
    keys = {name: link_user(nodes[0], tmp_path, name, f"acct_{name}") for name in USERS}
    for node in nodes:
        node.start()
    owner = wait_until(balanced(nodes, len(USERS)), what="two nodes sharing four accounts")
    assert owners(nodes[1]) == owner  # both nodes see one picture
    # Only the owner holds a login file; the database holds every login, encrypted.
    for uid, node_id in owner.items():
        for node in nodes:
            home = node.settings.codex_homes / str(uid) / "auth.json"
            assert home.exists() == (node.settings.node_id == node_id), (uid, node_id)
    stored = db_rows(nodes[0], "SELECT ciphertext FROM account_logins")
    assert len(stored) == len(USERS) and not any("refresh_token" in c for (c,) in stored)

    # Every user key answers through either node; the owner's codex does the work.
    for key in keys.values():
        for node in nodes:
            assert _chat(_client(node, key, request)) == "Hello from the fake backend."
    by_account = served_by(fake_backend.requests())
    uid_of = {name: i + 1 for i, name in enumerate(USERS)}
    for name in USERS:
        assert runs(by_account[f"acct_{name}"]) == [owner[uid_of[name]]], by_account

    # The master key prefers the receiving node's accounts: through each node, its own two.
    served: dict[str, set[str]] = {}
    for node in nodes:
        before = len(fake_backend.requests("/responses"))
        client = _client(node, master, request)
        for _ in range(4):
            assert _chat(client) == "Hello from the fake backend."
        calls = fake_backend.requests("/responses")[before:]
        served[node.settings.node_id] = {c["account_id"] for c in calls}
        assert {c["node"] for c in calls} == {node.settings.node_id}
    assert all(len(accts) == 2 for accts in served.values()), served
    assert not served["node-a"] & served["node-b"]  # spread over both nodes' accounts

    # A user key streamed through a node that does not own its account: the SSE stream
    # arrives whole, chunk by chunk, as the owner wrote it.
    name = next(n for n in USERS if owner[uid_of[n]] == "node-a")
    stream = _client(nodes[1], keys[name], request).chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from the fake backend."
    # Errors come back unchanged (status, OpenAI body, code) through the non-owner.
    with pytest.raises(openai.BadRequestError) as info:
        _client(nodes[1], keys[name], request).chat.completions.create(
            model="codex", messages=[{"role": "nobody", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError) as direct:
        _client(nodes[0], keys[name], request).chat.completions.create(
            model="codex", messages=[{"role": "nobody", "content": "hi"}]
        )
    assert info.value.body == direct.value.body

    # One usage row per answered request, written by the node that ran it (never by the
    # forwarding node as well); refused bodies write none, on one node as on several.
    def statuses() -> list[int]:
        return sorted(s for (s,) in db_rows(nodes[0], "SELECT status FROM requests"))

    wait_until(lambda: len(statuses()) >= 17, what="usage rows")
    time.sleep(1.5)  # a duplicate row would land within the recorder's flush interval
    assert statuses() == [200] * 17


def _stored_refresh_token(node: Any, user_id: int) -> str:
    [(ciphertext,)] = db_rows(
        node, "SELECT ciphertext FROM account_logins WHERE user_id = ?", (user_id,)
    )
    plain = KeyCipher(node.settings.openai_key_encryption_secret).decrypt(ciphertext)
    return json.loads(plain or "{}")["tokens"]["refresh_token"]


def test_a_killed_nodes_accounts_move_with_their_refreshed_logins(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    cluster_db: str | None,
) -> None:
    fake_backend.clear()
    lease_s = 3
    nodes, _ = make_nodes(
        live_server_factory, fake_backend.url, database_url=cluster_db, count=3, lease_s=lease_s
    )
    keys = {n: link_user(nodes[0], tmp_path, n, f"acct_{n}") for n in ("alice", "bobby", "carol")}
    for node in nodes:
        node.start()
    owner = wait_until(balanced(nodes, 3), what="three nodes, one account each")
    victim = next(n for n in nodes if n.settings.node_id == owner[1])  # alice's owner
    entry = next(n for n in nodes if n is not victim)

    # Two 401s in a row make codex refresh alice's tokens (the first only rereads auth.json);
    # the owner writes the rotated login back to the database within a second.
    fake_backend.script("acct_alice", {"kind": "unauthorized"}, {"kind": "unauthorized"})
    for key in keys.values():
        assert _chat(_client(entry, key, request)) == "Hello from the fake backend."
    rotations = wait_until(fake_backend.rotations, what="codex refreshing alice's tokens")
    assert len(rotations) == 1 and rotations[0][0].startswith("rt_fake_acct_alice_")
    issued = rotations[0][1]
    wait_until(lambda: _stored_refresh_token(entry, 1) == issued, what="login written back")

    # SIGKILL: no lease released, no login written back on the way out.
    assert victim.proc is not None
    killed_at = time.monotonic()
    victim.proc.kill()
    victim.proc.wait()
    moved = wait_until(
        lambda: (o := owners(entry)).get(1) not in (None, victim.settings.node_id) and o,
        timeout=10 * lease_s,
        what="another node taking alice's account",
    )
    took = time.monotonic() - killed_at
    assert took < lease_s * 1.5 + 2 * lease_s, took  # lease + margin + a tick or two of slack
    new_owner = next(n for n in nodes if n.settings.node_id == moved[1])
    home = new_owner.settings.codex_homes / "1" / "auth.json"
    assert json.loads(home.read_text())["tokens"]["refresh_token"] == issued
    # Alice's key answers again, through either surviving node, on the new owner.
    for node in nodes:
        if node is not victim:
            assert _chat(_client(node, keys["alice"], request)) == "Hello from the fake backend."
    # Nobody refreshed with a spent token; each account was served by one node at a time:
    # alice by her first owner, then (after the kill) by the new one; the others by one node.
    assert not [r for r in fake_backend.requests("/oauth/token") if r["body"]["reused"]]
    by_account = served_by(fake_backend.requests())
    assert runs(by_account["acct_alice"]) == [victim.settings.node_id, moved[1]]
    for n, uid in (("bobby", 2), ("carol", 3)):
        assert runs(by_account[f"acct_{n}"]) == [owner[uid]]


async def test_a_key_cap_and_a_lost_database_across_two_nodes(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    cluster_db: str | None,
    request: pytest.FixtureRequest,
) -> None:
    """A key's concurrency cap holds whichever node a request enters (both run on its owner);
    a node whose database is locked away refuses new work with 503 database_unavailable while
    a stream it already runs goes on, and takes work again by itself once the lock goes."""
    fake_backend.clear()
    # The outage must be noticed (45% of a lease) and over (a PostgreSQL restart) before the
    # node stops its accounts (60%); the stream must outlast the noticing.
    lease_s = 12 if cluster_db is None else 30
    nodes, _ = make_nodes(
        live_server_factory, fake_backend.url, database_url=cluster_db, count=2, lease_s=lease_s
    )
    for node in nodes:  # a write waits 300 ms for the lock, then the tick counts as failed
        settings = json.loads(node.settings_path.read_text())
        node.settings_path.write_text(json.dumps({**settings, "databaseBusyTimeoutMs": 300}))
    key = link_user(nodes[0], tmp_path, "kim", "acct_kim")
    for node in nodes:
        node.start()
    owner_id = wait_until(lambda: owners(nodes[1]).get(1), what="kim's account owned")
    owner = next(n for n in nodes if n.settings.node_id == owner_id)
    other = next(n for n in nodes if n is not owner)
    hi = [{"role": "user", "content": "hi"}]
    admin = await admin_session(other)
    through_owner = openai.AsyncOpenAI(base_url=owner.api, api_key=key, max_retries=0)
    through_other = openai.AsyncOpenAI(base_url=other.api, api_key=key, max_retries=0)
    async with admin, through_owner, through_other:
        resp = await admin.post(
            "/api/admin/openai-users/key-limits", json={"username": "kim", "concurrentRequests": 1}
        )
        assert resp.status == 200, await resp.text()
        await asyncio.sleep(0.2)  # the key cache notices the change (marker file)
        fake_backend.script("acct_kim", fake_backend.reply("slow one", delay_first_ms=1500))
        slow = asyncio.create_task(
            through_owner.chat.completions.create(model="codex", messages=hi)
        )
        await asyncio.to_thread(wait_until, lambda: fake_backend.responses_count("acct_kim"))
        with pytest.raises(openai.RateLimitError) as info:
            await through_other.chat.completions.create(model="codex", messages=hi)
        assert info.value.body["code"] == "key_concurrency_exceeded"
        assert (await slow).choices[0].message.content == "slow one"

        # The database goes away (another process holds its write lock) while a stream runs.
        chunks = lease_s * 2
        words = " ".join(f"w{i}" for i in range(chunks))
        fake_backend.script(
            "acct_kim", fake_backend.reply(words, chunks=chunks, delay_between_ms=330)
        )
        stream = await through_other.chat.completions.create(
            model="codex", messages=hi, stream=True
        )
        pieces: list[str] = []

        async def read_stream() -> None:
            async for chunk in stream:
                if chunk.choices:
                    pieces.append(chunk.choices[0].delta.content or "")

        reader = asyncio.create_task(read_stream())
        await asyncio.to_thread(wait_until, lambda: pieces, 10, "the stream's first words")
        pg = request.getfixturevalue("pg_cluster") if cluster_db else None
        with database_outage(owner, cluster_db, pg):
            refused = None
            for _ in range(lease_s * 10):
                try:
                    await through_owner.chat.completions.create(model="codex", messages=hi)
                except openai.APIStatusError as exc:
                    if exc.body and exc.body.get("code") == "database_unavailable":
                        refused = exc
                        break
                await asyncio.sleep(0.1)
        assert refused is not None and refused.status_code == 503
        assert refused.response.headers["retry-after"]
        assert not reader.done()  # the stream outlived the outage
        await reader
        assert "".join(pieces) == words
        # Back by itself: new work is taken again within moments.
        for _ in range(100):
            try:
                done = await through_owner.chat.completions.create(model="codex", messages=hi)
                break
            except openai.APIStatusError as exc:
                assert exc.body["code"] == "database_unavailable"
                await asyncio.sleep(0.1)
        assert done.choices[0].message.content == "Hello from the fake backend."


async def test_link_unlink_through_different_nodes(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    cluster_db: str | None,
    request: pytest.FixtureRequest,
) -> None:
    """A device login run on one node lands in the database and on the account's owner only;
    unlinking through the other node stops the account everywhere."""
    fake_backend.clear()
    fake_backend.set_device_account("acct_dana", "dana@example.com")
    nodes, _ = make_nodes(
        live_server_factory,
        fake_backend.url,
        database_url=cluster_db,
        count=2,
        testingLoginIssuer=fake_backend.url,
    )
    for node in nodes:
        node.start()
    hi = [{"role": "user", "content": "hi"}]
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(nodes[1].url, cookie_jar=jar) as portal:
        resp = await portal.post(
            "/api/openai/auth/register", json={"username": "dana", "password": "long-password"}
        )
        assert resp.status == 201, await resp.text()
        cookie = {
            "Cookie": f"{COOKIE_NAME}={jar.filter_cookies(URL(nodes[1].url))[COOKIE_NAME].value}"
        }
        started = await (await portal.post("/api/openai/codex/device/start")).json()
        assert fake_backend.approve_device(started["userCode"])
        for _ in range(150):
            status = await (await portal.get("/api/openai/codex/device/status")).json()
            if status["state"] != "awaiting_user":
                break
            await asyncio.sleep(0.2)
        assert status["state"] == "linked", status
        key = (await (await portal.post("/api/openai/keys/rotate")).json())["key"]

        owner_id = await asyncio.to_thread(
            wait_until, lambda: owners(nodes[0]).get(1), 20, "dana's account owned"
        )
        for node in nodes:
            home = node.settings.codex_homes / "1" / "auth.json"
            assert home.exists() == (node.settings.node_id == owner_id)
            async with openai.AsyncOpenAI(base_url=node.api, api_key=key, max_retries=0) as c:
                done = await c.chat.completions.create(model="codex", messages=hi)
                assert done.choices[0].message.content == "Hello from the fake backend."
        async with aiohttp.ClientSession(nodes[0].url) as other:
            me = await (await other.get("/api/openai/auth/me", headers=cookie)).json()
            assert me["linked"] is True
            resp = await other.post("/api/openai/codex/unlink", headers=cookie)
            assert (await resp.json())["wasLinked"] is True
        await asyncio.to_thread(
            wait_until, lambda: not owners(nodes[0]) and not owners(nodes[1]), 20, "no owner"
        )
        for node in nodes:
            assert not (node.settings.codex_homes / "1" / "auth.json").exists()
            async with openai.AsyncOpenAI(base_url=node.api, api_key=key, max_retries=0) as c:
                with pytest.raises(openai.PermissionDeniedError) as info:
                    await c.chat.completions.create(model="codex", messages=hi)
                assert info.value.body["code"] == "account_not_linked"
