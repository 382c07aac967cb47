"""Device login pieces without a server: parsing, redaction, environment, state machine.

The state machine runs a real executable: a tiny fake `codex` script that prints what 0.169.0
prints (codex-protocol.md 3.2) and behaves per sub-command. The e2e test uses the real binary.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from codexpool import linking
from codexpool.codex.process import child_env
from codexpool.config import Settings
from codexpool.device_login import (
    DeviceLogins,
    login_argv,
    redact,
    strip_ansi,
)
from codexpool.store import SqliteStore, Store

REAL_OUTPUT = (
    "\n\x1b[1mWelcome to Codex\x1b[0m [v\x1b[90m0.169.0\x1b[0m]\n"
    "\x1b[90mOpenAI's command-line coding agent\x1b[0m\n\n"
    "Follow these steps to sign in with ChatGPT using device code authorization:\n\n"
    "1. Open this link in your browser and sign in to your account\n"
    "   \x1b[94mhttp://127.0.0.1:18555/codex/device\x1b[0m\n\n"
    "2. Enter this one-time code \x1b[90m(expires in 15 minutes)\x1b[0m\n"
    "   \x1b[94mFAKE-1234\x1b[0m\n\n"
    "\x1b[90mContinue only if you started this login in Codex.\x1b[0m\n"
)

FAKE_CODEX = r"""#!/usr/bin/env python3
import json, os, sys, time
args = [a for a in sys.argv[1:]]
while args and args[0] == "-c":
    args = args[2:]
home = os.environ["CODEX_HOME"]
auth = os.path.join(home, "auth.json")
if args[:2] == ["login", "status"]:
    ok = os.path.exists(auth)
    sys.stderr.write("Logged in using ChatGPT\n" if ok else "Not logged in\n")
    sys.exit(0 if ok else 1)
if args[:1] == ["logout"]:
    if os.path.exists(auth):
        os.remove(auth)
    sys.stderr.write("Successfully logged out\n")
    sys.exit(0)
if args[:2] == ["login", "--device-auth"]:
    sys.stdout.write(os.environ.get("FAKE_OUTPUT", ""))
    sys.stdout.flush()
    mode = os.environ.get("FAKE_MODE", "approve")
    if mode == "hang":
        time.sleep(600)
    if mode == "fail":
        sys.stderr.write("Error logging in with device code: access_token=eyJhbGciOi.eyJzdWIiOi.sig denied\n")
        sys.exit(1)
    if mode == "timeout":
        sys.stderr.write("Error logging in with device code: device auth timed out after 15 minutes\n")
        sys.exit(1)
    time.sleep(0.3)
    with open(auth, "w") as fh:
        json.dump({"tokens": {"access_token": "a", "refresh_token": "r"}}, fh)
    sys.stderr.write("Successfully logged in\n")
    sys.exit(0)
sys.exit(2)
"""


@pytest.fixture
def fake_codex(tmp_path: Path) -> str:
    path = tmp_path / "fake-codex"
    path.write_text(FAKE_CODEX)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = SqliteStore(tmp_path / "db.sqlite3")
    await s.open()
    yield s
    await s.close()


def test_strip_ansi_and_parse_shape() -> None:
    text = strip_ansi(REAL_OUTPUT)
    assert "\x1b" not in text
    assert "http://127.0.0.1:18555/codex/device" in text


def test_redact_tokens_but_keep_link_and_code() -> None:
    line = (
        "id_token=eyJhbGciOiJub25lIn0.eyJlbWFpbCI6ImEifQ. refresh_token: rt_abcdefghijklmnop "
        "key sk-test-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA Bearer abc.def " + "x" * 40
    )
    out = redact(line)
    for secret in ("eyJhbGci", "rt_abcdefghijklmnop", "sk-test-AAAA", "abc.def", "x" * 40):
        assert secret not in out
    assert (
        redact("   http://127.0.0.1:18555/codex/device") == "   http://127.0.0.1:18555/codex/device"
    )
    assert redact("FAKE-1234") == "FAKE-1234"


def test_child_env_strips_overrides_and_secrets(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "OPENAI_API_KEY": "x",
        "OPENAI_BASE_URL": "x",
        "CODEX_API_KEY": "x",
        "CODEX_ACCESS_TOKEN": "x",
        "CODEX_REFRESH_TOKEN_URL_OVERRIDE": "x",
        "CODEX_REVOKE_TOKEN_URL_OVERRIDE": "x",
        "CODEX_APP_SERVER_LOGIN_ISSUER": "x",
        "CODEX_APP_SERVER_LOGIN_CLIENT_ID": "x",
        "ADMIN_PASSWORD": "x",
        "CODEXPOOL_SESSION_SECRET": "x",
        "CODEX_HOME": "/elsewhere",
    }
    env = child_env(tmp_path, base=base)
    assert env == {"PATH": "/usr/bin", "CODEX_HOME": str(tmp_path)}


def test_issuer_flag_only_with_test_setting(make_settings: Callable[..., Settings]) -> None:
    plain = login_argv("codex", make_settings(codexConfigOverrides=["a=1"]))
    assert plain == ["codex", "-c", "a=1", "login", "--device-auth"]
    testing = login_argv("codex", make_settings(testingLoginIssuer="http://127.0.0.1:1"))
    assert testing[-2:] == ["--experimental_issuer", "http://127.0.0.1:1"]


async def wait_state(logins: DeviceLogins, uid: int, states: set[str], within: float = 10) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = logins.status(uid)
        if status["state"] in states:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"state stayed {logins.status(uid)['state']}")


async def test_flow_links(
    make_settings: Callable[..., Settings], store: Store, fake_codex: str, monkeypatch
) -> None:
    settings = make_settings()
    monkeypatch.setenv("FAKE_OUTPUT", REAL_OUTPUT)  # environment of the fake child only
    stopped: list[str] = []
    logins = DeviceLogins(settings, store, fake_codex, stop_account=stopped.append)
    try:
        status = await logins.start(7, "alice")
        assert status["state"] in {"awaiting_user", "linked"}
        assert status["verificationUrl"] == "http://127.0.0.1:18555/codex/device"
        assert status["userCode"] == "FAKE-1234"
        assert 899 <= status["expiresAt"] - status["startedAt"] <= 901
        final = await wait_state(logins, 7, {"linked", "failed"})
        assert final["state"] == "linked", final
        assert final["linked"] is True
        assert any("Successfully logged in" in line for line in final["logs"])
        assert stopped == ["7"]  # a warm app-server is restarted onto the new login
        rows = await store.fetchall("SELECT action FROM audit ORDER BY id")
        assert [r["action"] for r in rows] == ["device.start", "device.linked"]
        # Unlink: logout, app-server stopped, auth.json gone, state back to idle.
        assert await logins.unlink(7) is True
        assert not linking.is_linked(linking.codex_home(settings, 7))
        assert logins.status(7)["state"] == "idle"
    finally:
        await logins.close()


async def test_flow_failure_is_redacted(
    make_settings: Callable[..., Settings], store: Store, fake_codex: str, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_OUTPUT", REAL_OUTPUT)
    monkeypatch.setenv("FAKE_MODE", "fail")
    logins = DeviceLogins(make_settings(), store, fake_codex)
    try:
        await logins.start(1, "bob")
        status = await wait_state(logins, 1, {"failed"})
        assert "eyJhbGci" not in str(status)
        assert "Error logging in" in status["error"]
    finally:
        await logins.close()


async def test_flow_timeout_maps_to_expired(
    make_settings: Callable[..., Settings], store: Store, fake_codex: str, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "timeout")
    logins = DeviceLogins(make_settings(), store, fake_codex)
    try:
        await logins.start(1, "bob")
        assert (await wait_state(logins, 1, {"expired", "failed"}))["state"] == "expired"
    finally:
        await logins.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cancel_and_restart_end_the_process(
    make_settings: Callable[..., Settings], store: Store, fake_codex: str, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_OUTPUT", REAL_OUTPUT)
    monkeypatch.setenv("FAKE_MODE", "hang")
    logins = DeviceLogins(make_settings(), store, fake_codex)
    try:
        await logins.start(3, "carol")
        first = logins._flows[3].proc
        assert first is not None and first.returncode is None
        await logins.start(3, "carol")  # a new start cancels the old flow
        assert first.returncode is not None and not _alive(first.pid)
        second = logins._flows[3].proc
        status = await logins.cancel(3)
        assert status["state"] == "cancelled"
        assert second is not None and second.returncode is not None
    finally:
        await logins.close()


async def test_missing_binary_fails_clearly(
    make_settings: Callable[..., Settings], store: Store
) -> None:
    logins = DeviceLogins(make_settings(), store, "")
    status = await logins.start(1, "dave")
    assert status["state"] == "failed"
    assert "codex CLI is not installed" in status["error"]
    await logins.close()


def test_is_linked_sees_a_new_link_at_once_and_forget_drops_a_link(tmp_path: Path) -> None:
    """ "Linked" is remembered for a moment without a stat; "not linked" never is, and the
    gateway's own unlinks forget, so neither a fresh link nor an unlink is ever missed."""
    home = tmp_path / "home"
    home.mkdir()
    assert not linking.is_linked(home)
    (home / "auth.json").write_text(json.dumps({"tokens": {"access_token": "x"}}))
    assert linking.is_linked(home)
    (home / "auth.json").unlink()
    linking.forget(home)
    assert not linking.is_linked(home)
