"""The request log over HTTP: filters, cursor paging, the portal's scoping and bad parameters
(over a temp store), and one real request through the real codex logged with its details."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from codexpool import users
from codexpool.app_keys import STORE
from codexpool.config import Settings
from codexpool.request_log import encode_cursor
from tests.conftest import ADMIN_PASSWORD
from tests.e2e_helpers import post_chat

from .users_helpers import (
    admin_login,
    assert_openai_error,
    call,
    new_portal_user,
    rotate_user_key,
)


@pytest.fixture
def settings(backend_settings: Callable[..., Settings]) -> Settings:
    """Run this module's app tests on both store backends (SQLite, PostgreSQL)."""
    return backend_settings()


async def add_row(store: Any, ts: float, **cols: Any) -> None:
    row = {
        "endpoint": "chat.completions",
        "key_kind": "user",
        "status": 200,
        "model": "gpt-5.5",
        "latency_ms": 500.0,
        **cols,
    }
    names = ", ".join(["ts", *row])
    marks = ", ".join("?" * (len(row) + 1))
    await store.execute(f"INSERT INTO requests ({names}) VALUES ({marks})", (ts, *row.values()))


async def get(api: Any, path: str, cookie: str) -> dict[str, Any]:
    resp = await call(api, "GET", path, cookie)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def setup_two_users(api: Any) -> tuple[Any, str, str, int, int]:
    """ivy (key + account) and jon: rows of their keys, their accounts and the pool's."""
    store = api.app[STORE]
    ivy_cookie = await new_portal_user(api, "ivy")
    await rotate_user_key(api, ivy_cookie)
    jon_cookie = await new_portal_user(api, "jon")
    ivy = (await users.get_user(store, "ivy")).id  # type: ignore[union-attr]
    jon = (await users.get_user(store, "jon")).id  # type: ignore[union-attr]
    now = time.time()
    # 10 of ivy's own, 2 of them failed upstream; 3 pool requests on ivy's account; 4 of jon's.
    for i in range(10):
        failed = i in (3, 7)
        await add_row(
            store,
            now - 100 + i,
            key_user_id=ivy,
            account_user_id=ivy,
            status=502 if failed else 200,
            error_code="upstream_error" if failed else None,
            error_source="upstream" if failed else None,
            error_message="ChatGPT answered 500" if failed else None,
            request_id=f"ivy-{i}",
            effort="low",
            ttft_ms=120.0,
            input_tokens=50,
            cached_tokens=20,
            output_tokens=5,
        )
    for i in range(3):
        await add_row(
            store, now - 50 + i, key_kind="master", account_user_id=ivy, request_id=f"pool-{i}"
        )
    for i in range(4):
        await add_row(
            store,
            now - 40 + i,
            key_user_id=jon,
            account_user_id=jon,
            status=429 if i == 0 else 200,
            request_id=f"jon-{i}",
        )
    # A pool request no account served.
    await add_row(store, now - 30, key_kind="master", status=503, error_code="pool_exhausted")
    return store, ivy_cookie, jon_cookie, ivy, jon


async def test_admin_filters_and_paging(api: Any) -> None:
    await setup_two_users(api)
    admin = await admin_login(api)
    everything = await get(api, "/api/admin/requests", admin)
    rows = everything["data"]
    assert len(rows) == 18 and not everything["hasMore"] and everything["nextCursor"] is None
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
    assert rows[0]["errorCode"] == "pool_exhausted" and rows[0]["account"] is None
    failed = next(r for r in rows if r["requestId"] == "ivy-7")
    assert failed["user"] == "ivy" and failed["account"] == "ivy" and failed["status"] == 502
    assert failed["errorSource"] == "upstream" and failed["errorMessage"] == "ChatGPT answered 500"
    assert failed["effort"] == "low" and failed["ttftMs"] == 120.0 and failed["durationMs"] == 500
    assert failed["cachedTokens"] == 20 and failed["startedAt"] == pytest.approx(failed["ts"] - 0.5)
    assert not {"prompt", "messages", "answer", "content"} & set(failed)

    ids = lambda data: [r["requestId"] for r in data["data"]]  # noqa: E731
    by_user = await get(api, "/api/admin/requests?user=ivy", admin)
    assert ids(by_user) == [f"ivy-{i}" for i in range(9, -1, -1)]
    by_account = await get(api, "/api/admin/requests?account=IVY", admin)
    assert len(by_account["data"]) == 13
    assert {r["keyKind"] for r in by_account["data"]} == {"user", "master"}
    errors5 = await get(api, "/api/admin/requests?status=5xx", admin)
    assert sorted(r["status"] for r in errors5["data"]) == [502, 502, 503]
    errors4 = await get(api, "/api/admin/requests?status=4xx&account=jon", admin)
    assert ids(errors4) == ["jon-0"]
    ok_ivy = await get(api, "/api/admin/requests?status=2xx&user=ivy", admin)
    assert len(ok_ivy["data"]) == 8

    # A time range: [since, until), in Unix seconds or ISO 8601.
    ts = {r["requestId"]: r["ts"] for r in rows}
    window = await get(api, f"/api/admin/requests?since={ts['ivy-2']}&until={ts['ivy-5']}", admin)
    assert ids(window) == ["ivy-4", "ivy-3", "ivy-2"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts["jon-0"] - 0.5))
    later = await get(api, f"/api/admin/requests?since={iso}Z", admin)
    assert len(later["data"]) == 5

    # Cursor paging walks every row exactly once, newest first, with the filters kept.
    seen: list[str] = []
    path = "/api/admin/requests?user=ivy&limit=3"
    page = await get(api, path, admin)
    pages = 1
    while True:
        seen += ids(page)
        if not page["hasMore"]:
            break
        page = await get(api, f"{path}&cursor={page['nextCursor']}", admin)
        pages += 1
    assert seen == [f"ivy-{i}" for i in range(9, -1, -1)] and pages == 4


async def test_rows_sharing_a_timestamp_page_without_loss(api: Any) -> None:
    store = api.app[STORE]
    for i in range(7):
        await add_row(store, 1_700_000_000.0, request_id=f"same-{i}")
    admin = await admin_login(api)
    seen: list[str] = []
    cursor = ""
    while True:
        page = await get(api, f"/api/admin/requests?limit=2{cursor}", admin)
        seen += [r["requestId"] for r in page["data"]]
        if not page["hasMore"]:
            break
        cursor = f"&cursor={page['nextCursor']}"
    assert seen == [f"same-{i}" for i in range(6, -1, -1)]


async def test_portal_sees_only_its_own(api: Any) -> None:
    _, ivy_cookie, jon_cookie, _, _ = await setup_two_users(api)
    ivy = await get(api, "/api/openai/requests", ivy_cookie)
    got = [r["requestId"] for r in ivy["data"]]
    assert sorted(got) == sorted([f"ivy-{i}" for i in range(10)] + [f"pool-{i}" for i in range(3)])
    assert got == [r["requestId"] for r in sorted(ivy["data"], key=lambda r: -r["ts"])]
    jon = await get(api, "/api/openai/requests", jon_cookie)
    assert sorted(r["requestId"] for r in jon["data"]) == [f"jon-{i}" for i in range(4)]
    # Paging the merged view (own key + served by the account) loses and repeats nothing.
    seen: list[str] = []
    cursor = ""
    while True:
        page = await get(api, f"/api/openai/requests?limit=4{cursor}", ivy_cookie)
        seen += [r["requestId"] for r in page["data"]]
        if not page["hasMore"]:
            break
        cursor = f"&cursor={page['nextCursor']}"
    assert seen == got
    failed = await get(api, "/api/openai/requests?status=5xx", ivy_cookie)
    assert [r["requestId"] for r in failed["data"]] == ["ivy-7", "ivy-3"]
    # A user cannot widen the view to someone else's rows.
    for param in ("user=jon", "account=jon"):
        resp = await call(api, "GET", f"/api/openai/requests?{param}", ivy_cookie)
        err = await assert_openai_error(resp, 400, "invalid_request")
        assert err["param"] == param.split("=")[0]
    # Nor can a portal cookie read the admin log, or nobody read either.
    resp = await call(api, "GET", "/api/admin/requests", ivy_cookie)
    await assert_openai_error(resp, 401, None)
    resp = await call(api, "GET", "/api/openai/requests")
    await assert_openai_error(resp, 401, None)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("status=3xx", "status"),
        ("status=", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=%C2%B2", "limit"),
        ("since=yesterday", "since"),
        ("until=nan", "until"),
        ("since=-5", "since"),
        ("until=1e999", "until"),
        ("cursor=%%%", "cursor"),
        ("cursor=bm9wZQ", "cursor"),
        (f"cursor={encode_cursor(1.0, 2**70)}", "cursor"),
        ("usr=ivy", "usr"),
    ],
)
async def test_bad_parameters_are_openai_400s(api: Any, query: str, param: str) -> None:
    admin = await admin_login(api)
    resp = await call(api, "GET", f"/api/admin/requests?{query}", admin)
    err = await assert_openai_error(resp, 400, "invalid_request")
    assert err["param"] == param


async def test_a_deleted_users_rows_keep_their_name(api: Any) -> None:
    await setup_two_users(api)
    admin = await admin_login(api)
    resp = await call(
        api, "POST", "/api/admin/openai-users/delete", admin, json={"username": "jon"}
    )
    assert resp.status == 200, await resp.text()
    rows = (await get(api, "/api/admin/requests", admin))["data"]
    jons = [r for r in rows if (r["requestId"] or "").startswith("jon-")]
    assert len(jons) == 4 and {(r["user"], r["account"]) for r in jons} == {
        ("jon (deleted)", "jon (deleted)")
    }
    # The name is gone from filters (no such user now), not from the rows.
    resp = await call(api, "GET", "/api/admin/requests?user=jon", admin)
    await assert_openai_error(resp, 404, "user_not_found")


async def test_unknown_user_is_a_404(api: Any) -> None:
    admin = await admin_login(api)
    for param in ("user", "account"):
        resp = await call(api, "GET", f"/api/admin/requests?{param}=nobody", admin)
        err = await assert_openai_error(resp, 404, "user_not_found")
        assert err["param"] == param


@pytest.mark.e2e
def test_real_requests_are_logged_with_their_details(linked: Any, fake_backend: Any) -> None:
    """A chat turn through the real codex and a failed one show up with request id, effort,
    time to first token, tokens and, for the failure, the error's code, source and message."""
    server, key = linked
    path = server.url + "/api/openai/v1/chat/completions"

    def chat(request_id: str) -> int:
        body = {
            "model": "codex",
            "messages": [{"role": "user", "content": "secret prompt text"}],
            "stream": True,
            "reasoning_effort": "low",
        }
        return post_chat(path, key, body, request_id)

    assert chat("log-ok-1") == 200
    fake_backend.script("acct_alice", fake_backend.status(500))
    assert chat("log-fail-1") == 502
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    login = urllib.request.Request(
        server.url + "/api/auth/login",
        data=json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    opener.open(login, timeout=10).read()
    with opener.open(server.url + "/api/admin/requests?user=alice", timeout=10) as resp:
        raw = resp.read().decode()
    assert "secret prompt text" not in raw and "Hello from the fake backend" not in raw
    rows = {r["requestId"]: r for r in json.loads(raw)["data"]}
    ok, failed = rows["log-ok-1"], rows["log-fail-1"]
    assert ok["status"] == 200 and ok["user"] == "alice" and ok["account"] == "alice"
    assert ok["effort"] == "low" and ok["stream"] is True and ok["keyKind"] == "user"
    assert ok["ttftMs"] > 0 and ok["durationMs"] >= ok["ttftMs"] and ok["outputTokens"] > 0
    assert failed["status"] == 502 and failed["errorCode"] == "upstream_error"
    assert failed["errorSource"] == "upstream" and failed["errorMessage"]
