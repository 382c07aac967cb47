"""Shared fixtures: settings in a temp data root, the app under aiohttp's test client, the real
server as a subprocess on a free loopback port, the real codex binary and the fake ChatGPT
backend it talks to.

Nothing of codexpool is patched: the only fake is the ChatGPT backend behind the real binary.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from codexpool.codex.process import proc_table
from codexpool.config import Settings, find_codex_bin, load_settings
from codexpool.security import hash_password

REPO = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "admin-password-for-tests"
# Hashing once keeps bcrypt's deliberate slowness out of every test's setup.
ADMIN_HASH = hash_password(ADMIN_PASSWORD, rounds=4)
SERVER_MARK = "TEST_LIVE_SERVER_DATA"  # environment mark of a live server's processes


def free_port() -> int:
    """Return a TCP port that is free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def codex_bin() -> str:
    """Return the pinned real codex binary, or skip when it is not installed."""
    path = os.environ.get("CODEXPOOL_CODEX_BIN") or find_codex_bin()
    if not path:
        pytest.skip("codex binary not installed (run .ci/run or install.sh)")
    return path


@pytest.fixture(scope="session")
def fake_backend() -> Iterator[Any]:
    """Run one fake ChatGPT backend on loopback for the whole session."""
    from codexpool.testing.fake_backend import FakeBackend

    backend = FakeBackend()
    backend.start()
    yield backend
    backend.stop()


def write_settings(data_dir: Path, **overrides: Any) -> Path:
    """Write a complete test settings.json into data_dir and return its path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "adminUsername": "admin",
        "adminPassword": ADMIN_HASH,
        "openaiApiKeyPrefix": "sk-test-",
        "openaiMasterKeyPrefix": "sk-master-",
        "openaiKeyEncryptionSecret": "k" * 40,
        "sessionSecret": "s" * 40,
        "dataDir": str(data_dir),
        "logLevel": "debug",
    }
    data.update(overrides)
    path = data_dir / "settings.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """Run one private PostgreSQL cluster for the session, or skip when it is not installed."""
    from codexpool.testing.pg_cluster import PgCluster, PgUnavailable

    try:
        cluster = PgCluster()
    except PgUnavailable as exc:
        if os.environ.get("CODEXPOOL_REQUIRE_POSTGRES"):
            pytest.fail(str(exc))  # CI (.ci/run) must run these tests, not skip them
        pytest.skip(str(exc))
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """Return the URL of a fresh, empty database of the session's cluster (one per test)."""
    return pg_cluster.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Yield an open store of each backend: the SQLite file, then a fresh PostgreSQL database."""
    from codexpool.store import SqliteStore, postgres_store

    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "db.sqlite3")
    else:
        opened = postgres_store(request.getfixturevalue("pg_url"))
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Return a factory of validated Settings in a fresh temp data root."""

    def factory(**overrides: Any) -> Settings:
        return load_settings(write_settings(tmp_path / "data", **overrides), env={})

    return factory


@pytest.fixture(params=["sqlite", "postgres"])
def backend_settings(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Return make_settings on each store backend: the SQLite file, then a fresh PostgreSQL
    database. A module runs its app tests on both by overriding `settings` with it."""
    if request.param == "sqlite":
        return make_settings
    url = request.getfixturevalue("pg_url")
    return lambda **overrides: make_settings(databaseUrl=url, **overrides)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Return default test settings (no codex overrides)."""
    return make_settings()


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> Any:
    """Return aiohttp's test client over the app built from the default test settings."""
    from codexpool.app import create_app

    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings) -> Any:
    """Return a test client without a cookie jar: every request names its identity."""
    import aiohttp

    from codexpool.app import create_app

    return await aiohttp_client(create_app(settings), cookie_jar=aiohttp.DummyCookieJar())


def codex_children(pid: int) -> list[int]:
    """Return the pids of live codex processes (and zombies) descending from pid."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for child, name, state, parent, _ in proc_table():
        names[child] = "zombie" if state == "Z" else name
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        if names.get(child, "").startswith("codex") or names.get(child) == "zombie":
            found.append(child)
        stack.extend(children.get(child, []))
    return found


class LiveServer:
    """The real `python -m codexpool serve` process on a loopback port."""

    def __init__(self, settings_path: Path) -> None:
        self.settings_path = settings_path
        self.settings = load_settings(settings_path, env={})
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.api = f"{self.url}/api/openai/v1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = settings_path.parent / "server.log"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a `codexpool` admin command against this server's settings."""
        return subprocess.run(
            [sys.executable, "-m", "codexpool", "--settings", str(self.settings_path), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
            env=_child_env(),
        )

    def start(self) -> None:
        """Start the server and wait until /api/health answers."""
        # Every process the server starts inherits this mark, also inside a sandbox where
        # CODEX_HOME no longer names the data folder: the teardown finds leftovers by it.
        env = {**_child_env(), SERVER_MARK: str(self.settings_path.parent)}
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "codexpool", "--settings", str(self.settings_path), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.settings.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        """Return what the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM the server, wait, and return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CODEXPOOL_SETTINGS", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Return a factory that starts real servers; each is stopped and checked at teardown."""
    servers: list[LiveServer] = []

    def factory(start: bool = True, **overrides: Any) -> LiveServer:
        data_dir = tmp_path / f"server{len(servers)}"
        server = LiveServer(write_settings(data_dir, **overrides))
        servers.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in servers:
        pid = server.proc.pid if server.proc else None
        server.stop()
        if pid is not None:
            # The server is gone; any codex it started must be gone too (no orphans).
            leftovers = [p for p in _all_codex_pids() if _environ_mentions(p, server.settings_path)]
            assert not leftovers, f"codex processes outlived the server: {leftovers}"


def _all_codex_pids() -> list[int]:
    """Return codex processes and the bubblewrap sandboxes around them."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith(("codex", "bwrap")):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _environ_mentions(pid: int, settings_path: Path) -> bool:
    """Tell whether a process belongs to this server: its CODEX_HOME or the server's mark
    (SERVER_MARK, inherited inside a sandbox too) names the data folder."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return str(settings_path.parent).encode() in environ


@pytest.fixture
def openai_client() -> Iterator[Callable[..., openai.OpenAI]]:
    """Return a factory of the official SDK's client for a live server and a key:
    `openai_client(server, key, timeout=60)`. It makes no retries, so a failure shows as it
    happened; every client it made is closed at teardown (a pooled socket left to the garbage
    collector fails the run under filterwarnings = error)."""
    clients: list[openai.OpenAI] = []

    def make(server: LiveServer, key: str, **options: Any) -> openai.OpenAI:
        client = openai.OpenAI(base_url=server.api, api_key=key, **{"max_retries": 0, **options})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def async_openai(server: LiveServer, key: str, **options: Any) -> openai.AsyncOpenAI:
    """Return the SDK's async client for a live server and a key, without retries like
    `openai_client`; use it as `async with async_openai(server, key) as client:` (closing it
    needs the loop that used it, so no fixture can)."""
    return openai.AsyncOpenAI(base_url=server.api, api_key=key, **{"max_retries": 0, **options})


@pytest.fixture
def linked(
    live_server_factory: Callable[..., LiveServer],
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
) -> tuple[LiveServer, str]:
    """A running server with one linked user ("alice" on fake account acct_alice) and her key.

    Shared by the Python SDK and Node SDK end-to-end tests so both link accounts one way.
    """
    from codexpool.testing.fake_backend import codex_overrides

    from .e2e_helpers import link_user

    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url)
    )
    key = link_user(server, tmp_path, "alice", "acct_alice")
    # The fake is shared by the session: undo what an earlier test's usage limit left behind.
    fake_backend.set_usage("acct_alice", primary_used=10, secondary_used=5)
    server.start()
    return server, key
