"""A private PostgreSQL cluster for tests and benchmarks: initdb in a temp folder, pg_ctl start
on a free loopback port, one database per test, stop and remove at the end.

PostgreSQL refuses to run as root, so when we are root the folder is handed to an unprivileged
user (`nobody`) and the server commands run as that user through `runuser`. Nothing else of
the machine is touched: no system cluster, no fixed port, the unix socket in the temp folder.

    with PgCluster.running() as cluster:
        url = cluster.create_database()   # postgresql://postgres@127.0.0.1:PORT/test_1
        cluster.stop(); cluster.start()   # an outage, same port and data
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PG_BIN_DIRS = (
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
)
UNPRIVILEGED_USER = "nobody"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60


class PgUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed (tests skip with this message)."""


def find_pg_bin() -> Path:
    """Return the folder of initdb/pg_ctl/postgres, or raise PgUnavailable."""
    env = os.environ.get("CODEXPOOL_PG_BIN")
    candidates = [Path(env)] if env else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(d) for d in PG_BIN_DIRS]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise PgUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` "
        "package (.ci/run does) or set CODEXPOOL_PG_BIN"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One throwaway PostgreSQL server owned by an unprivileged user."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.bin = find_pg_bin()
        self.root = Path(root or tempfile.mkdtemp(prefix="cxpg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = port or _free_port()
        self._as_user: list[str] = []
        self._names = itertools.count(1)
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            self._as_user = ["runuser", "-u", UNPRIVILEGED_USER, "--"]
            self._uid, self._gid = user.pw_uid, user.pw_gid

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[PgCluster]:
        """Yield a started cluster; stop and remove it afterwards."""
        cluster = cls()
        try:
            cluster.init()
            cluster.start()
            yield cluster
        finally:
            cluster.destroy()

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        done = subprocess.run(
            [*self._as_user, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,  # the unprivileged user may not enter the caller's folder
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr}\n{log}")
        return done.stdout

    def init(self) -> None:
        """Create the cluster's files (initdb); trust authentication, loopback only."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self._as_user:
            for path in (self.root, self.sockets):
                os.chown(path, self._uid, self._gid)
        self.root.chmod(0o700)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        options = " ".join(
            (
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.sockets}",
                # Throwaway data: durability costs time and buys nothing here.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            )
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` disconnects clients; `immediate` is a crash)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running_now(self) -> bool:
        """Tell whether the server process is up."""
        done = subprocess.run(
            [*self._as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            cwd=self.root,
            check=False,
        )
        return done.returncode == 0

    def url(self, database: str = "postgres") -> str:
        """Return the connection URL of a database of this cluster."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql as the superuser and return its unaligned output."""
        return subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.url(database),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        name = name or f"test_{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def destroy(self) -> None:
        """Stop the server if it runs and remove every file."""
        if self.data.exists() and self.running_now():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
