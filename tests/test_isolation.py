"""The model cannot read the gateway's data: codex processes that can run commands (execute
runs, chat with `chatLeanFeatures` off) run in a bubblewrap sandbox (codex/isolation.py).

The end-to-end tests make the fake backend script `exec_command` calls, so the REAL codex
binary runs the commands an attacker's model would, and read what came back from the fake's
request log (the command output codex sent upstream). Start-up refuses those settings when no
sandbox can run on the machine.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from codexpool.codex.isolation import gateway_isolation
from codexpool.testing.fake_backend import codex_overrides

from .conftest import LiveServer, _child_env, _environ_mentions, write_settings
from .e2e_helpers import link_user

EXECUTE = "/api/openai/v1/codex/execute"
BWRAP = shutil.which("bwrap")
needs_bwrap = pytest.mark.skipif(
    BWRAP is None, reason="bubblewrap not installed (apt-get install bubblewrap; .ci/run does)"
)


def _script_command(fake: Any, account_id: str, cmd: str, **extra: Any) -> str:
    """Make the account's next model answer an `exec_command` call; return its call id."""
    call_id = f"call_iso_{uuid.uuid4().hex[:8]}"
    args = json.dumps({"cmd": cmd, "yield_time_ms": 10_000, **extra})
    fake.script(
        account_id,
        {"kind": "function_call", "name": "exec_command", "arguments": args, "call_id": call_id},
    )
    return call_id


def _command_output(fake: Any, call_id: str) -> str:
    """Return the output codex sent back upstream for that call (what the model would read)."""
    for req in reversed(fake.requests("/responses")):
        for item in (req.get("body") or {}).get("input", []):
            if item.get("type") == "function_call_output" and item.get("call_id") == call_id:
                out = item.get("output")
                return out if isinstance(out, str) else json.dumps(out)
    raise AssertionError(f"codex never answered call {call_id}")


def _execute(server: LiveServer, key: str, cwd: Path) -> dict[str, Any]:
    import urllib.request

    req = urllib.request.Request(
        server.url + EXECUTE,
        data=json.dumps({"prompt": "run it", "cwd": str(cwd), "timeoutMs": 90_000}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _probe_script(targets: list[Path], data: Path) -> str:
    """A shell script that tries to read each target and list the data folder, one marked
    line per attempt."""
    lines = [
        f"if cat '{t}' >/dev/null 2>&1; then echo 'READ {t}'; else echo 'DENIED {t}'; fi"
        for t in targets
    ]
    lines.append(f"echo \"LS-DATA [$(ls -A '{data}' 2>/dev/null | tr '\\n' ' ')]\"")
    return "; ".join(lines)


def _home(server: LiveServer, username: str) -> Path:
    """Return the CODEX_HOME of a user's linked account."""
    con = sqlite3.connect(server.settings.db_path)
    try:
        (user_id,) = con.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
    finally:
        con.close()
    return server.settings.codex_homes / str(user_id)


def _secrets_of(server: LiveServer) -> list[str]:
    """Return secret strings an attacker would be after: the settings' secrets and every
    linked account's refresh token."""
    values = json.loads(server.settings_path.read_text())
    found = [values["openaiKeyEncryptionSecret"], values["sessionSecret"], values["adminPassword"]]
    for auth in server.settings.codex_homes.glob("*/auth.json"):
        found.append(json.loads(auth.read_text())["tokens"]["refresh_token"])
    return found


@pytest.fixture
def two_users(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[LiveServer, dict[str, str], Path]:
    """A server where the model can run commands (execute on, lean chat off) with two linked
    users, alice (acct_iso_a) and bob (acct_iso_b); return (server, keys, execute root)."""
    if BWRAP is None:
        pytest.skip("bubblewrap not installed (apt-get install bubblewrap; .ci/run does)")
    # As in production, the Codex homes must not lie in codex's temporary folder: codex
    # refuses to set up its own sandbox's helper there and then runs no command at all,
    # which would hide the attack from a gateway without our sandbox.
    (tmp_path / "tmpdir").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmpdir"))
    root = tmp_path / "exec-root"
    for name in ("alice", "bob"):
        (root / name).mkdir(parents=True)
    server = live_server_factory(
        start=False,
        executeEnabled=True,
        executeAllowedRoots=[str(root)],
        chatLeanFeatures=False,
        codexConfigOverrides=codex_overrides(fake_backend.url),
    )
    keys = {
        "alice": link_user(server, tmp_path, "alice", "acct_iso_a"),
        "bob": link_user(server, tmp_path, "bob", "acct_iso_b"),
    }
    for account in ("acct_iso_a", "acct_iso_b"):
        fake_backend.clear_script(account)
        fake_backend.set_usage(account, primary_used=10, secondary_used=5)
    server.start()
    return server, keys, root


@pytest.mark.e2e
def test_execute_and_chat_models_cannot_read_the_gateways_data(
    two_users: tuple[LiveServer, dict[str, str], Path],
    fake_backend: Any,
    openai_client: Any,
) -> None:
    server, keys, root = two_users
    data = server.settings.data_path
    # Bob uses both paths first, so his spare, state and scratch folders exist to be attacked.
    bob_chat = openai_client(server, keys["bob"])
    bob_chat.chat.completions.create(model="codex", messages=[{"role": "user", "content": "hi"}])
    _execute(server, keys["bob"], root / "bob")
    alice_home, bob_home = _home(server, "alice"), _home(server, "bob")
    bob_files = [
        bob_home / "auth.json",
        *sorted(p for p in data.glob(f"codex-state/exec-{bob_home.name}.spare/*") if p.is_file()),
        *sorted(p for p in data.glob(f"codex-state/{bob_home.name}.*/*") if p.is_file()),
    ]
    (data / "scratch" / bob_home.name / "notes.txt").write_text("bob's scratch")
    targets = [
        server.settings_path,
        server.settings.db_path,
        alice_home / "auth.json",  # her own login, at its host path
        *bob_files,
        data / "scratch" / bob_home.name / "notes.txt",
        root / "bob" / "bob-only.txt",
    ]
    (root / "bob" / "bob-only.txt").write_text("bob's work")
    assert all(t.exists() for t in targets) and len(bob_files) >= 3, targets
    secrets = _secrets_of(server)

    # Execute: the attack fails, the run's own work in its cwd still succeeds.
    own = "echo own-work > result.txt && cat result.txt && pwd"
    call = _script_command(
        fake_backend, "acct_iso_a", f"{_probe_script(targets, data)}; {own}; ls -A /tmp"
    )
    body = _execute(server, keys["alice"], root / "alice")
    assert body["exitCode"] == 0, body
    out = _command_output(fake_backend, call)
    for target in targets:
        assert f"DENIED {target}" in out, out
    assert "READ " not in out and "LS-DATA []" in out, out
    assert f"own-work\n{root / 'alice'}" in out, out
    assert (root / "alice" / "result.txt").read_text() == "own-work\n"
    assert not any(s in out for s in secrets)

    # Non-lean chat: codex's shell tool runs the same attack from a chat turn.
    call = _script_command(
        fake_backend, "acct_iso_a", f"{_probe_script(targets, data)}; echo chat-own-work; pwd"
    )
    alice_chat = openai_client(server, keys["alice"])
    answer = alice_chat.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "run it"}]
    )
    assert answer.choices[0].message.content
    out = _command_output(fake_backend, call)
    for target in targets:
        assert f"DENIED {target}" in out, out
    assert "READ " not in out and "LS-DATA []" in out, out
    assert "chat-own-work\n/codexpool/work" in out, out
    assert not any(s in out for s in secrets)
    assert "Model commands run in a bubblewrap sandbox" in server.log()
    # The pid the engine reads the memory of (recycling) is codex's, not the sandbox's.
    started = re.findall(r"Started codex app-server for account \S+ \(pid (\d+)\)", server.log())
    assert started and all(
        Path(f"/proc/{pid}/comm").read_text().startswith("codex") for pid in started
    ), started


@pytest.mark.e2e
def test_each_execute_run_has_a_private_tmp_and_dies_with_the_gateway(
    two_users: tuple[LiveServer, dict[str, str], Path], fake_backend: Any
) -> None:
    """While alice's run holds a file in its /tmp, bob's concurrent run does not see it, and
    the host's /tmp never had it. A SIGKILLed gateway then takes alice's sandbox with it."""
    server, keys, root = two_users
    marker = f"iso-marker-{uuid.uuid4().hex}"
    started = root / "alice" / "started"
    _script_command(  # the sleep outlasts the test: the gateway's SIGKILL must end it
        fake_backend,
        "acct_iso_a",
        f"echo alice > /tmp/{marker} && touch started && sleep 25",
        yield_time_ms=30_000,
    )
    done: dict[str, Any] = {}

    def run_alice() -> None:
        try:
            done["alice"] = _execute(server, keys["alice"], root / "alice")
        except Exception as exc:  # the gateway is killed under it
            done["error"] = exc

    alice = threading.Thread(target=run_alice)
    alice.start()
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline, "alice's command never ran"
            time.sleep(0.1)
        call = _script_command(
            fake_backend, "acct_iso_b", f"ls -A /tmp; cat /tmp/{marker} || echo NO-MARKER"
        )
        _execute(server, keys["bob"], root / "bob")
        out = _command_output(fake_backend, call)
        assert "NO-MARKER" in out and marker not in out.replace(f"/tmp/{marker}", ""), out
        assert not Path("/tmp", marker).exists()  # noqa: S108 (the host's /tmp, on purpose)
        assert server.proc is not None
        sandboxed = [p for p in _processes_of(server) if p[0] != server.proc.pid]
        assert any(name == "sleep" for _, name in sandboxed), sandboxed  # alice's still runs
        server.proc.kill()
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _processes_of(server):
            assert time.monotonic() < deadline, f"outlived the gateway: {_processes_of(server)}"
            time.sleep(0.1)
    finally:
        alice.join(timeout=120)


def _processes_of(server: LiveServer) -> list[tuple[int, str]]:
    """Return (pid, name) of every process that inherited the server's environment mark."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _environ_mentions(int(entry.name), server.settings_path):
            try:
                found.append((int(entry.name), (entry / "comm").read_text().strip()))
            except OSError:
                continue
    return found


@needs_bwrap
def test_sandbox_masks_gateway_paths_inside_a_shown_folder(tmp_path: Path) -> None:
    """A settings file or data folder that lies inside a folder the sandbox shows (an
    execute root holding them, `/etc/codexpool/`) is masked; the rest of the folder stays."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "codexpool.sqlite3").write_text("database")
    (work / "settings.json").write_text("secret settings")
    (work / "mine.txt").write_text("mine")
    home = tmp_path / "home"
    home.mkdir()
    sandbox = gateway_isolation("", (work / "data", work / "settings.json"))
    script = (
        'cat settings.json; echo "[$(ls -A data)]"; cat data/codexpool.sqlite3; cat mine.txt; '
        'echo "HOME=$HOME CODEX_HOME=$CODEX_HOME"'
    )
    argv, env = sandbox.command(
        ["/bin/sh", "-c", script],
        {"PATH": "/usr/bin:/bin", "CODEX_HOME": str(home)},
        codex_home=home,
        state_dir=None,
        workdir=work,
    )
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert "secret settings" not in proc.stdout and "database" not in proc.stdout, proc
    assert "[]" in proc.stdout and "mine" in proc.stdout, proc
    assert "HOME=/tmp CODEX_HOME=/codexpool/home" in proc.stdout, proc
    # A working folder inside a hidden one is refused, never shown.
    with pytest.raises(OSError, match="inside the gateway"):
        sandbox.command(["/bin/true"], {}, codex_home=home, state_dir=None, workdir=work / "data")


# --- start-up refuses what it cannot confine ----------------------------------------------


def _serve(tmp_path: Path, **overrides: Any) -> subprocess.CompletedProcess[str]:
    settings = write_settings(tmp_path / "data", **overrides)
    return subprocess.run(
        [sys.executable, "-m", "codexpool", "--settings", str(settings), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_env(),
        check=False,
    )


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"executeEnabled": True}, "executeEnabled"),
        ({"chatLeanFeatures": False}, "chatLeanFeatures false"),
    ],
)
def test_start_refuses_commands_without_a_sandbox(
    tmp_path: Path, overrides: dict[str, Any], names: str
) -> None:
    missing = _serve(tmp_path, bwrapPath=str(tmp_path / "no-such-bwrap"), **overrides)
    lines = (missing.stdout + missing.stderr).strip().splitlines()
    assert missing.returncode != 0
    assert len(lines) == 1, lines
    assert names in lines[0] and "bubblewrap not found" in lines[0], lines
    # A bwrap that runs but cannot build a sandbox (here: one that always fails).
    failing = tmp_path / "failing-bwrap"
    failing.write_text(
        "#!/bin/sh\necho 'bwrap: No permission to create new namespace' >&2\nexit 1\n"
    )
    failing.chmod(0o755)
    broken = _serve(tmp_path, bwrapPath=str(failing), **overrides)
    lines = (broken.stdout + broken.stderr).strip().splitlines()
    assert broken.returncode != 0 and len(lines) == 1, lines
    assert "cannot create its sandbox" in lines[0] and "new namespace" in lines[0], lines


def test_check_reports_the_sandbox(tmp_path: Path) -> None:
    """`codexpool check` fails when a model may run commands and no sandbox runs, and says
    whether one is available otherwise."""
    settings = write_settings(
        tmp_path / "data", executeEnabled=True, bwrapPath=str(tmp_path / "no-such-bwrap")
    )
    run = subprocess.run(
        [sys.executable, "-m", "codexpool", "--settings", str(settings), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_env(),
        check=False,
    )
    assert run.returncode == 1
    assert "FAIL sandbox for model commands (executeEnabled): bubblewrap not found" in run.stdout
    if BWRAP is not None:
        settings = write_settings(tmp_path / "data", executeEnabled=True)
        run = subprocess.run(
            [sys.executable, "-m", "codexpool", "--settings", str(settings), "check"],
            capture_output=True,
            text=True,
            timeout=60,
            env=_child_env(),
            check=False,
        )
        assert f"ok   sandbox for model commands: {Path(BWRAP).resolve()}" in run.stdout, run


async def test_execute_refuses_a_cwd_inside_the_data_folder(
    aiohttp_client: Any, make_settings: Any, tmp_path: Path
) -> None:
    """An allowed root that holds the data folder must not let a run work inside it: its
    sandbox shows `cwd` as it is, other accounts' homes included."""
    from codexpool.app import create_app

    from .test_execute import _master_key
    from .users_helpers import assert_openai_error

    settings = make_settings(executeEnabled=True, executeAllowedRoots=[str(tmp_path)])
    homes = settings.codex_homes / "7"
    homes.mkdir(parents=True)
    client = await aiohttp_client(create_app(settings))
    auth = {"Authorization": f"Bearer {await _master_key(client.app)}"}
    for cwd in (settings.data_path, homes, settings.codex_state_path.parent):
        resp = await client.post(EXECUTE, json={"prompt": "x", "cwd": str(cwd)}, headers=auth)
        err = await assert_openai_error(resp, 403, "cwd_not_allowed")
        assert err["param"] == "cwd" and "data folder" in err["message"]
    # The root around it stays allowed (the data folder is masked in there): no account yet.
    resp = await client.post(EXECUTE, json={"prompt": "x", "cwd": str(tmp_path)}, headers=auth)
    await assert_openai_error(resp, 503, "no_linked_accounts")


@pytest.mark.e2e
def test_lean_chat_runs_no_command_at_all(
    linked: tuple[LiveServer, str], fake_backend: Any, openai_client: Any
) -> None:
    """Why the default lean chat needs no sandbox: codex runs no command the model asks for."""
    server, key = linked
    call = _script_command(fake_backend, "acct_alice", f"cat '{server.settings_path}'")
    client = openai_client(server, key)
    client.chat.completions.create(model="codex", messages=[{"role": "user", "content": "x"}])
    out = _command_output(fake_backend, call)
    assert "unsupported call" in out.lower() and "sessionSecret" not in out, out
