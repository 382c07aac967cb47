"""The `codexpool` command line as an operator meets it: init, check, hash-password,
example-settings, and the one-line errors a bad settings file gives (exit 2, setting named).

Every test runs the real console entry point in a subprocess, so argument parsing, exit codes
and what lands on stdout/stderr are what a shell sees.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from codexpool.config import load_settings
from codexpool.security import verify_password

from .conftest import REPO, write_settings


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m codexpool ARGS` with a clean environment; never raise on exit codes."""
    base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "VIRTUAL_ENV"}}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "codexpool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=base,
        check=False,
    )


def test_init_writes_private_valid_settings(tmp_path: Path) -> None:
    path = tmp_path / "data" / "settings.json"
    res = run_cli(
        "--settings",
        str(path),
        "init",
        "--port",
        "9123",
        "--admin-username",
        "root-admin",
        "--api-key-prefix",
        "sk-u-",
        "--master-key-prefix",
        "sk-m-",
        env={"ADMIN_PASSWORD": "correct horse battery"},
    )
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = json.loads(path.read_text())
    assert raw["adminPassword"].startswith("$2")  # bcrypt, never the plain password
    assert verify_password("correct horse battery", raw["adminPassword"])
    assert "correct horse battery" not in path.read_text() + res.stdout
    s = load_settings(path, env={})
    assert (s.port, s.admin_username) == (9123, "root-admin")
    assert (s.openai_api_key_prefix, s.openai_master_key_prefix) == ("sk-u-", "sk-m-")
    assert len(s.openai_key_encryption_secret) >= 32 and len(s.session_secret) >= 32


def test_init_refuses_to_overwrite_and_secrets_differ(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "settings.json", tmp_path / "b" / "settings.json"
    assert run_cli("--settings", str(a), "init").returncode == 0
    assert run_cli("--settings", str(b), "init").returncode == 0
    before = a.read_text()
    res = run_cli("--settings", str(a), "init")
    assert res.returncode == 2 and "exists" in res.stderr
    assert a.read_text() == before
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ja["sessionSecret"] != jb["sessionSecret"]
    assert ja["openaiKeyEncryptionSecret"] != jb["openaiKeyEncryptionSecret"]


def test_init_generated_password_is_shown_once_and_works(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    res = run_cli("--settings", str(path), "init")
    assert res.returncode == 0
    line = next(x for x in res.stdout.splitlines() if x.startswith("Admin sign-in:"))
    password = line.split("/", 1)[1].split()[0]
    assert verify_password(password, json.loads(path.read_text())["adminPassword"])


def test_hash_password_prints_bcrypt(tmp_path: Path) -> None:
    res = run_cli("hash-password", "some-password-1")
    assert res.returncode == 0
    assert verify_password("some-password-1", res.stdout.strip())


def test_example_settings_file_matches_the_code() -> None:
    """settings.example.json at the repo root is exactly what the code documents."""
    res = run_cli("example-settings")
    assert res.returncode == 0
    on_disk = (REPO / "settings.example.json").read_text()
    assert json.loads(on_disk) == json.loads(res.stdout), (
        "settings.example.json drifted: run `python -m codexpool example-settings "
        "> settings.example.json`"
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"adminPassword": ""}, "adminPassword"),
        ({"port": 70000}, "port"),
        ({"port": "eighty"}, "port"),
        ({"noSuchSetting": 1}, "noSuchSetting"),
        ({"logLevel": "loud"}, "logLevel"),
        ({"shutdownGraceSeconds": 0}, "shutdownGraceSeconds"),
        ({"sessionSecret": "short"}, "sessionSecret"),
    ],
)
def test_bad_settings_stop_with_one_line_naming_the_setting(
    tmp_path: Path, change: dict[str, object], named: str
) -> None:
    path = write_settings(tmp_path / "data", **change)
    for command in (["serve"], ["key", "rotate", "--master"]):
        res = run_cli("--settings", str(path), *command)
        assert res.returncode == 2, res
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], res.stderr
        assert "Traceback" not in res.stderr


def test_missing_settings_file_says_how_to_create_it(tmp_path: Path) -> None:
    res = run_cli("--settings", str(tmp_path / "nope.json"), "serve")
    assert res.returncode == 2
    assert "codexpool init" in res.stderr


def test_check_passes_on_a_fresh_install(tmp_path: Path) -> None:
    path = write_settings(tmp_path / "data")
    res = run_cli("--settings", str(path), "check")
    if "codex binary not found" in res.stdout:
        pytest.skip("codex binary not installed")
    assert res.returncode == 0, res.stdout
    assert "ok   settings" in res.stdout and "ok   data folder" in res.stdout
    assert "codex-cli" in res.stdout  # `codex --version` really ran


def test_check_reports_what_to_fix(tmp_path: Path) -> None:
    path = write_settings(tmp_path / "data", codexBin=str(tmp_path / "no-codex"))
    res = run_cli("--settings", str(path), "check")
    assert res.returncode == 1
    assert "FAIL codex binary not found" in res.stdout and "fix:" in res.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = run_cli("--settings", str(bad), "check")
    assert res.returncode == 1 and "FAIL settings" in res.stdout


def test_check_runs_login_status_for_linked_accounts(tmp_path: Path) -> None:
    """A linked account whose auth.json codex rejects is a FAIL naming the user."""
    path = write_settings(tmp_path / "data")
    assert run_cli("--settings", str(path), "user", "add", "alice").returncode == 0
    home = tmp_path / "data" / "codex-homes" / "1"
    home.mkdir(parents=True)
    # Looks linked to the gateway (has an access token) but is not a login codex accepts.
    (home / "auth.json").write_text(json.dumps({"tokens": {"access_token": "x"}}))
    res = run_cli("--settings", str(path), "check")
    if "codex binary not found" in res.stdout:
        pytest.skip("codex binary not installed")
    assert "account alice" in res.stdout, res.stdout


def test_key_rotate_master_if_missing_mints_once(tmp_path: Path) -> None:
    path = write_settings(tmp_path / "data")
    first = run_cli("--settings", str(path), "key", "rotate", "--master", "--if-missing")
    assert first.returncode == 0 and first.stdout.strip().startswith("sk-master-")
    again = run_cli("--settings", str(path), "key", "rotate", "--master", "--if-missing")
    assert again.returncode == 0 and again.stdout.strip() == ""
    assert "exists" in again.stderr


def test_settings_option_before_or_after_any_subcommand(tmp_path: Path) -> None:
    """`--settings PATH` works where users type it: before the subcommand, after it, and after
    a nested one; a later one wins, none leaves the default."""
    from codexpool.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["serve"]).settings is None
    for argv in (
        ["--settings", "a.json", "serve"],
        ["serve", "--settings", "a.json"],
        ["serve", "--port", "1", "--settings=a.json"],
        ["check", "--settings", "a.json"],
        ["init", "--settings", "a.json", "--force"],
        ["user", "add", "bob", "--settings", "a.json"],
        ["user", "--settings", "a.json", "add", "bob"],
        ["key", "rotate", "--master", "--settings", "a.json"],
        ["link", "import", "bob", "--auth-json", "x", "--settings", "a.json"],
        ["--settings", "other.json", "key", "rotate", "--settings", "a.json"],
    ):
        assert parse(argv).settings == "a.json", argv

    # The real command line: init, a user and their key with the option after the subcommand.
    path = tmp_path / "data" / "settings.json"
    assert run_cli("init", "--settings", str(path)).returncode == 0
    res = run_cli("user", "add", "bob", "--password", "a-long-password-1", "--settings", str(path))
    assert res.returncode == 0, res.stderr
    res = run_cli("key", "rotate", "bob", "--settings", str(path))
    assert res.returncode == 0 and res.stdout.strip().startswith("sk-cp-"), res.stderr
    res = run_cli("--settings", str(path), "user", "add", "bob", "--password", "another-one-22")
    assert res.returncode == 2 and "bob" in res.stderr  # same database: bob exists


def test_serve_accepts_settings_after_the_subcommand(tmp_path: Path) -> None:
    """`codexpool serve --settings PATH` starts the server (it used to be refused)."""
    import signal
    import socket
    import time

    path = write_settings(tmp_path / "data")
    port = load_settings(path, env={}).port
    base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "VIRTUAL_ENV"}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "codexpool", "serve", "--settings", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=base,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert f"on http://127.0.0.1:{port}" in out
