"""The installer and the operations scripts, run the way an admin runs them.

A fresh `git clone` of this repo in a temp folder gets `./install.sh --yes` (no systemd here, so
the background path), then `scripts/healthcheck.sh` and `scripts/stop.sh`, and a second install
that must keep the data and settings. The clone reuses the already installed codex package
(a symlinked `.codex-cli`) instead of downloading 300 MB again; `.ci/run` installs it first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import REPO, free_port, proc_table

pytestmark = pytest.mark.e2e


def _env() -> dict[str, str]:
    """The installer's environment: the caller's, minus anything pointing at this checkout."""
    env = dict(os.environ)
    for name in ("CODEXPOOL_SETTINGS", "CODEXPOOL_CODEX_BIN", "VIRTUAL_ENV", "PORT"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    return env


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _group_members(pgid: int) -> list[int]:
    return [pid for pid, _, state, _, group in proc_table() if group == pgid and state != "Z"]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """Return a fresh clone of the committed repo with the codex package linked in."""
    local_codex = REPO / ".codex-cli"
    if not any(local_codex.glob("node_modules/@openai/codex-*/vendor/*/bin/codex")):
        pytest.skip("codex not installed at the repo root (run scripts/install-codex.sh)")
    dest = tmp_path / "codexpool"
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True, timeout=120)
    (dest / ".codex-cli").symlink_to(local_codex)
    return dest


def test_unattended_install_start_health_stop_reinstall(clone: Path) -> None:
    port = free_port()
    t0 = time.monotonic()
    first = _run(
        ["./install.sh", "--yes", "--port", str(port), "--admin-password", "installer-pass-1"],
        clone,
    )
    took = time.monotonic() - t0
    data = clone / "data"
    pidfile = data / "codexpool.pid"
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        out = first.stdout
        assert f":{port}/openai" in out and f":{port}/api/health" in out, out
        assert "Master (pool) key" in out
        settings_path = data / "settings.json"
        assert settings_path.stat().st_mode & 0o777 == 0o600
        settings = json.loads(settings_path.read_text())
        assert settings["port"] == port and settings["adminPassword"].startswith("$2")
        assert "installer-pass-1" not in settings_path.read_text()

        health = _run(["scripts/healthcheck.sh"], clone, timeout=30)
        assert health.returncode == 0, health.stdout + health.stderr
        pid = int(pidfile.read_text())
        assert _pid_alive(pid)

        # Upgrade in place: same settings, same database, the server restarted.
        db_before = (data / "codexpool.sqlite3").stat().st_ino
        second = _run(["./install.sh", "--yes", "--port", str(free_port())], clone)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "Keeping the existing" in second.stdout
        assert "Master (pool) key" not in second.stdout  # the first one stays valid
        assert json.loads(settings_path.read_text()) == settings
        assert (data / "codexpool.sqlite3").stat().st_ino == db_before
        assert not _pid_alive(pid)
        pid = int(pidfile.read_text())
        assert _run(["scripts/healthcheck.sh"], clone, timeout=30).returncode == 0

        stop = _run(["scripts/stop.sh"], clone, timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "stopped" in stop.stdout
        assert not _pid_alive(pid) and not _group_members(pid)
        assert not pidfile.exists()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        unhealthy = _run(["scripts/healthcheck.sh"], clone, timeout=30)
        assert unhealthy.returncode != 0
        assert _run(["scripts/stop.sh"], clone, timeout=30).returncode == 0  # idempotent
    finally:
        if pidfile.exists():  # a failed assertion must not leave a server behind
            _run(["scripts/stop.sh", "--timeout", "5"], clone, timeout=60)
    print(f"first install took {took:.1f}s")


def test_installer_installs_codex_when_missing(tmp_path: Path) -> None:
    """With no usable codex, install.sh runs the pinned npm install (checked without network
    by a fake npm on PATH that records its arguments)."""
    if shutil.which("bash") is None:
        pytest.skip("bash missing")
    dest = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True, timeout=120)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "npm.log"
    npm = bindir / "npm"
    npm.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 1\n')
    npm.chmod(0o755)
    env = _env()
    env["PATH"] = f"{bindir}{os.pathsep}" + os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "codex").exists()
    )
    res = subprocess.run(
        ["./install.sh", "--yes", "--no-start"],
        cwd=dest,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode != 0  # the fake npm fails: the installer stops and says so
    assert "@openai/codex@0.169.0" in log.read_text()
    assert "--prefix" in log.read_text() and ".codex-cli" in log.read_text()


def test_scripts_pass_bash_n_and_shellcheck() -> None:
    scripts = [REPO / "install.sh"] + [
        REPO / "scripts" / name for name in ("lib.sh", "start.sh", "stop.sh", "healthcheck.sh")
    ]
    for script in scripts:
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, f"{script}: {res.stderr}"
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    res = subprocess.run(
        ["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True, cwd=REPO
    )
    assert res.returncode == 0, res.stdout


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    exe = venv / "bin" / "codexpool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    text = (REPO / "systemd" / "codexpool.service").read_text()
    for key, value in {
        "@USER@": "root",
        "@VENV@": str(venv),
        "@REPO@": str(REPO),
        "@DATA_DIR@": str(data),
        "@RW_PATHS@": str(data),
        "@PROTECT_HOME@": "yes",
    }.items():
        text = text.replace(key, value)
    assert "@" not in text.split("[Unit]", 1)[1]
    unit = tmp_path / "codexpool.service"
    unit.write_text(text)
    res = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for needed in ("Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert needed in text
