"""POST /api/openai/v1/codex/execute: refused unless enabled, `cwd` confined to the allowed
roots (after `..` and symlinks), a real `codex exec` run against the fake backend, and a stream
that SIGTERM ends cleanly.
"""

from __future__ import annotations

import http.client
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from codexpool.errors import ApiError
from codexpool.execute import resolve_cwd

from .conftest import free_port

EXECUTE = "/api/openai/v1/codex/execute"
FAKE_CODEX = str(Path(__file__).resolve().parent.parent / "codexpool/testing/fake_codex.py")


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """Return (allowed root, a folder outside it) with a few traps inside the root."""
    root = tmp_path / "work"
    (root / "project" / "sub").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "inside-link").symlink_to(root / "project")
    (root / "file.txt").write_text("x")
    return root, outside


def _code(raw: object, allowed: tuple[str, ...]) -> tuple[int, str | None]:
    with pytest.raises(ApiError) as info:
        resolve_cwd(raw, allowed)
    return info.value.status, info.value.code


def test_cwd_inside_roots_resolves_to_real_path(roots: tuple[Path, Path]) -> None:
    root, _ = roots
    allowed = (str(root),)
    assert resolve_cwd(str(root), allowed) == root.resolve()
    assert resolve_cwd(str(root / "project" / "sub"), allowed) == (root / "project/sub").resolve()
    assert resolve_cwd(str(root / "inside-link"), allowed) == (root / "project").resolve()
    assert (
        resolve_cwd(str(root / "project" / ".." / "project"), allowed)
        == (root / "project").resolve()
    )


def test_cwd_escapes_are_refused(roots: tuple[Path, Path]) -> None:
    root, outside = roots
    allowed = (str(root),)
    assert _code(str(root / ".."), allowed) == (403, "cwd_not_allowed")
    assert _code(str(root / "project" / ".." / ".." / "secret"), allowed) == (
        403,
        "cwd_not_allowed",
    )
    assert _code(str(root / "escape"), allowed) == (403, "cwd_not_allowed")  # symlink out
    assert _code(str(outside), allowed) == (403, "cwd_not_allowed")  # absolute elsewhere
    assert _code("/", allowed) == (403, "cwd_not_allowed")
    assert _code(str(root) + "-sibling", allowed)[0] == 400  # prefix is not containment
    assert _code(str(root / "missing"), allowed) == (400, "cwd_not_found")
    assert _code(str(root / "file.txt"), allowed) == (400, "cwd_not_a_directory")
    assert _code("project", allowed) == (400, "invalid_cwd")  # relative
    assert _code("", allowed) == (400, "invalid_cwd")
    assert _code(None, allowed) == (400, "invalid_cwd")
    assert _code(str(root), ()) == (403, "cwd_not_allowed")  # no roots: nothing allowed


def test_sibling_with_root_prefix_is_outside(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    sibling = tmp_path / "work-other"
    sibling.mkdir()
    assert _code(str(sibling), (str(root),)) == (403, "cwd_not_allowed")


# --- over HTTP (the app in-process) --------------------------------------------------------


async def _master_key(app: Any) -> str:
    from codexpool import users
    from codexpool.app_keys import CIPHER, SETTINGS, STORE

    return await users.rotate_key(
        app[STORE],
        app[CIPHER],
        kind="master",
        prefix=app[SETTINGS].openai_master_key_prefix,
        label="t",
    )


async def test_execute_disabled_by_default(aiohttp_client: Any, make_settings: Any) -> None:
    from codexpool.app import create_app

    from .users_helpers import assert_openai_error

    client = await aiohttp_client(create_app(make_settings()))
    resp = await client.post(EXECUTE, json={"prompt": "hi", "cwd": "/tmp"})
    await assert_openai_error(resp, 401, "missing_api_key")
    key = await _master_key(client.app)
    resp = await client.post(
        EXECUTE, json={"prompt": "hi", "cwd": "/tmp"}, headers={"Authorization": f"Bearer {key}"}
    )
    await assert_openai_error(resp, 403, "execute_disabled")


async def test_execute_refuses_cwd_outside_roots_over_http(
    aiohttp_client: Any, make_settings: Any, roots: tuple[Path, Path]
) -> None:
    from codexpool.app import create_app

    from .users_helpers import assert_openai_error

    root, outside = roots
    # The fake codex executable: the route needs a codex to exist (codex_missing otherwise),
    # not the real binary, which unit tests must not depend on; none is started here.
    settings = make_settings(
        executeEnabled=True, executeAllowedRoots=[str(root)], codexBin=FAKE_CODEX
    )
    client = await aiohttp_client(create_app(settings))
    auth = {"Authorization": f"Bearer {await _master_key(client.app)}"}
    for cwd, status, code in [
        (str(root / ".." / "secret"), 403, "cwd_not_allowed"),
        (str(root / "escape"), 403, "cwd_not_allowed"),
        (str(outside), 403, "cwd_not_allowed"),
        (str(root / "nope"), 400, "cwd_not_found"),
    ]:
        resp = await client.post(EXECUTE, json={"prompt": "hi", "cwd": cwd}, headers=auth)
        err = await assert_openai_error(resp, status, code)
        assert err["param"] == "cwd"
    resp = await client.post(EXECUTE, json={"cwd": str(root)}, headers=auth)
    await assert_openai_error(resp, 400, "invalid_prompt")
    resp = await client.post(
        EXECUTE, json={"prompt": "x", "cwd": str(root), "timeoutMs": -1}, headers=auth
    )
    await assert_openai_error(resp, 400, "invalid_timeout")
    # Allowed cwd but no linked account: the pool says so (no codex is started).
    resp = await client.post(EXECUTE, json={"prompt": "x", "cwd": str(root)}, headers=auth)
    await assert_openai_error(resp, 503, "no_linked_accounts")


async def test_execute_checks_the_body_before_the_codex_binary(
    aiohttp_client: Any, make_settings: Any, roots: tuple[Path, Path], tmp_path: Path
) -> None:
    """Without a codex binary a bad `cwd` is still named; a good request is told why it cannot
    run (503 codex_missing), before any key quota or account is used."""
    from codexpool.app import create_app

    from .users_helpers import assert_openai_error

    root, outside = roots
    settings = make_settings(
        executeEnabled=True,
        executeAllowedRoots=[str(root)],
        codexBin=str(tmp_path / "no-such-codex"),
    )
    client = await aiohttp_client(create_app(settings))
    auth = {"Authorization": f"Bearer {await _master_key(client.app)}"}
    resp = await client.post(EXECUTE, json={"prompt": "x", "cwd": str(outside)}, headers=auth)
    await assert_openai_error(resp, 403, "cwd_not_allowed")
    resp = await client.post(EXECUTE, json={"prompt": "x", "cwd": str(root)}, headers=auth)
    await assert_openai_error(resp, 503, "codex_missing")


# --- the real server, the real codex binary, the fake backend ------------------------------


def _linked_server(
    live_server_factory: Any, tmp_path: Path, backend_url: str, **overrides: Any
) -> tuple[Any, str, Path]:
    """Start a server with execute on and one linked user; return (server, user key, root)."""
    fake = pytest.importorskip("codexpool.testing.fake_backend")
    root = tmp_path / "exec-root"
    root.mkdir(exist_ok=True)
    server = live_server_factory(
        executeEnabled=True,
        executeAllowedRoots=[str(root)],
        codexConfigOverrides=list(fake.codex_overrides(backend_url)),
        **overrides,
    )
    auth_json = tmp_path / "auth.json"
    auth_json.write_text(json.dumps(fake.make_auth_json("acct_exec_1", "exec@example.com")))
    server.cli("user", "add", "execer")
    server.cli("link", "import", "execer", "--auth-json", str(auth_json))
    key = server.cli("key", "rotate", "execer").stdout.strip()
    return server, key, root


def _post(server: Any, key: str, body: dict[str, Any]) -> http.client.HTTPResponse:
    """POST to execute; the response closes its connection when read to the end."""
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=120)
    conn.request(
        "POST",
        EXECUTE,
        body=json.dumps(body),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Connection": "close",
        },
    )
    resp = conn.getresponse()
    conn.close()  # the response keeps the socket until it is read; no leak afterwards
    return resp


@pytest.mark.e2e
def test_execute_runs_real_codex_against_fake(
    live_server_factory: Any, fake_backend: Any, codex_bin: str, tmp_path: Path
) -> None:
    server, key, root = _linked_server(live_server_factory, tmp_path, fake_backend.url)
    t0 = time.monotonic()
    resp = _post(server, key, {"prompt": "Say hello", "cwd": str(root), "timeoutMs": 60_000})
    body = json.loads(resp.read())
    took = time.monotonic() - t0
    assert resp.status == 200, body
    assert isinstance(body["finalMessage"], str) and body["finalMessage"]
    assert body["exitCode"] == 0 and body["threadId"]
    assert any(i.get("type") == "agent_message" for i in body["items"])
    assert body["usage"] and body["usage"]["output_tokens"] >= 0
    print(f"execute round trip {took:.2f}s")

    resp = _post(server, key, {"prompt": "Again", "cwd": str(root), "stream": True})
    assert resp.status == 200 and resp.getheader("Content-Type", "").startswith("text/event-stream")
    text = resp.read().decode()
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    final = json.loads(events[-2])
    assert final["type"] == "result" and final["finalMessage"] and final["exitCode"] == 0
    assert any(json.loads(e).get("type") == "thread.started" for e in events[:-1])
    # One access line per request: route, status, key id (never the key), account served.
    line = next(x for x in server.log().splitlines() if f"POST {EXECUTE} 200" in x)
    assert "account=execer" in line and "key=" in line and key not in server.log()
    # Each run kept codex's databases in a directory of its own; its log database went with
    # the run (the rest waits for the account's next run).
    state = server.settings.codex_state_path
    assert [p.name for p in state.glob("exec-*")] == ["exec-1.spare"]
    assert not list(state.glob("*/logs_*"))
    assert not list(server.settings.codex_homes.glob("*/*.sqlite*"))


@pytest.mark.e2e
def test_sigterm_during_execute_stream_ends_it_cleanly(
    live_server_factory: Any, codex_bin: str, tmp_path: Path
) -> None:
    """Codex keeps reconnecting to a dead backend; SIGTERM must still end the stream with an
    error event and [DONE] within the grace period, and leave no codex behind (the fixture
    checks that at teardown)."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: codex retries forever
    server, key, root = _linked_server(live_server_factory, tmp_path, dead, shutdownGraceSeconds=2)
    resp = _post(server, key, {"prompt": "hang", "cwd": str(root), "stream": True})
    assert resp.status == 200
    first = resp.readline()  # the run has started (thread.started or an error event)
    assert first.startswith(b"data: ")
    assert server.proc is not None
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    rest = resp.read().decode()  # returns when the server ends the stream
    took = time.monotonic() - t0
    events = [line[6:] for line in rest.splitlines() if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", rest
    err = json.loads(events[-2])["error"]
    assert err["code"] == "server_shutting_down"
    assert took < 15, took
    assert server.proc.wait(timeout=30) == 0


@pytest.mark.e2e
def test_execute_runs_are_bounded_per_key_and_in_the_gateway(
    live_server_factory: Any, codex_bin: str, tmp_path: Path
) -> None:
    """A key runs one execute run at a time and the gateway at most executeMaxConcurrent:
    further requests get 429 with Retry-After at once, before any codex process starts (40
    concurrent runs from one key used to make 40 processes and 4 GiB). The portal quick test
    shares the key's one place. Once the run ends, the key may run again."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: each run stays alive
    server, key, root = _linked_server(
        live_server_factory, tmp_path, dead, executeMaxConcurrent=1, metricsToken=METRICS_TOKEN
    )
    master = server.cli("key", "rotate", "--master").stdout.strip()
    running = _post(server, key, {"prompt": "hang", "cwd": str(root), "stream": True})
    assert running.status == 200
    assert running.readline().startswith(b"data: ")  # the run has started
    for who, body, code in [
        (key, {"prompt": "again", "cwd": str(root)}, "execute_in_progress"),
        (master, {"prompt": "other key", "cwd": str(root)}, "execute_capacity_reached"),
    ]:
        for _ in range(3):
            resp = _post(server, who, body)
            err = json.loads(resp.read())["error"]
            assert resp.status == 429 and err["code"] == code, err
            assert err["type"] == "rate_limit_error" and resp.getheader("Retry-After") == "5"
    # The quick test with the same key waits for the same place.
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=30)
    conn.request(
        "POST",
        "/api/openai/codex/execute-session",
        body=json.dumps({"prompt": "hi"}),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    quick = conn.getresponse()
    assert (
        quick.status == 429 and json.loads(quick.read())["error"]["code"] == "execute_in_progress"
    )
    conn.close()
    pids = _exec_pids(server)
    assert len(pids) == 1, pids  # the refused requests started nothing
    running.close()  # the client goes away: the run is stopped and its places freed
    deadline = time.monotonic() + 20
    while True:  # the places come back as the run's process group ends
        resp = _post(server, key, {"prompt": "now", "cwd": str(root), "stream": True})
        if resp.status == 200:
            break
        assert resp.status == 429 and time.monotonic() < deadline, "the places stayed taken"
        resp.read()
        time.sleep(0.1)
    assert resp.readline().startswith(b"data: ")
    resp.close()
    metrics = _metrics(server)
    assert 'codexpool_refused_total{reason="execute_in_progress"}' in metrics
    assert 'codexpool_refused_total{reason="execute_capacity_reached"}' in metrics


def _exec_pids(server: Any) -> list[int]:
    """Return the pids of this server's live `codex exec` processes."""
    from .conftest import codex_children

    assert server.proc is not None
    found = []
    for pid in codex_children(server.proc.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"exec" in cmdline:
            found.append(pid)
    return found


METRICS_TOKEN = "metrics-token-for-tests"


def _metrics(server: Any) -> str:
    """Return the /metrics text (the server must have metricsToken METRICS_TOKEN)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=30)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 200, text
    return text
