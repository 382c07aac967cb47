"""A private SQLite home for every codex process the gateway starts; its log database goes
with the process.

codex 0.169.0 keeps its SQLite databases in CODEX_HOME unless `CODEX_SQLITE_HOME` says
otherwise. One of them, `logs_2.sqlite`, takes ~50 TRACE/DEBUG rows per chat turn whatever
`RUST_LOG` says, may hold pieces of the conversation, and is capped per thread and by a 10-day
retention only. The gateway starts one ephemeral thread per request, so on a busy account
that file grows by tens of KiB per request for ten days, on disk, with other users' prompts
in it (docs/codex-protocol-notes.md). Nothing the gateway runs reads it back: chat turns and
execute runs are ephemeral, logins live in auth.json.

So each process gets a directory of its own, named after the gateway's pid so that a later
start can tell leftovers of a dead gateway from another live one, and when the process has
ended its log database is deleted. The other databases (schema, migrations, a backfill
marker: no conversation data) are kept as the account's spare for its next process, because
creating and migrating them from nothing costs ~70 ms of a cold start (measured: 250 against
172 ms to first text). The log database's size is then bounded by one process's life, which
memory recycling and the idle stop bound already.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

SQLITE_HOME_ENV = "CODEX_SQLITE_HOME"
# codex 0.169.0's log database (+ -wal, -shm), in its SQLite home or, by default, CODEX_HOME.
LOG_GLOB = "logs_*.sqlite*"
SPARE = "spare"
EXEC_PREFIX = "exec-"  # execute runs of an account: `exec-<account>.<pid>.<n>`

_sequence = itertools.count(1)


@dataclass(frozen=True)
class StateDir:
    """One process's SQLite home; `release()` once the process has ended."""

    path: Path
    spare: Path  # where the account's databases wait for its next process

    def release(self) -> None:
        """Delete the log database, keep the rest as the spare (or drop it if there is one).

        Synchronous on purpose: it runs in `finally` blocks and at shutdown, where an await
        could be cancelled and leave the log database behind; a few unlinks and a rename cost
        well under a millisecond.
        """
        if not self.path.is_dir():
            return
        delete_logs(self.path)
        try:
            self.path.rename(self.spare)  # refused when a spare exists: another process's
        except OSError:
            shutil.rmtree(self.path, ignore_errors=True)


class StateDirs:
    """Hands out the private SQLite homes under one root (`<dataDir>/codex-state`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, name: str) -> StateDir:
        """Return a directory for one new process: `<name>.<gateway pid>.<n>`, made from the
        account's spare when there is one."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root / f"{name}.{os.getpid()}.{next(_sequence)}"
        spare = self.root / f"{name}.{SPARE}"
        try:
            spare.rename(path)
        except OSError:
            path.mkdir(mode=0o700)
        return StateDir(path, spare)

    def clear_stale(self) -> int:
        """Remove the directories a gateway that is no longer running left behind (a crash or
        SIGKILL skips the release); return how many went. Spares stay: they hold no logs."""
        removed = 0
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return 0
        except OSError as exc:  # unreadable: each process's start will say so, with a 502
            _LOGGER.warning("Cannot clear codex state directories in %s: %s", self.root, exc)
            return 0
        for path in entries:
            if path.name.endswith(f".{SPARE}"):
                continue
            pid = _owner_pid(path.name)
            if pid is not None and pid != os.getpid() and _running(pid):
                continue  # another gateway on the same data directory still uses it
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        return removed


def remove_spares(root: Path, account_key: str) -> None:
    """Remove a deleted account's spares (chat and execute); nothing else would."""
    for name in (account_key, f"{EXEC_PREFIX}{account_key}"):
        shutil.rmtree(root / f"{name}.{SPARE}", ignore_errors=True)


def delete_logs(directory: Path) -> None:
    """Delete codex's log database in a SQLite home or a CODEX_HOME (none may have it open).

    In a CODEX_HOME it is what an older gateway let codex write there: codex no longer opens
    it, so nothing would ever prune it again.
    """
    for path in directory.glob(LOG_GLOB):
        with contextlib.suppress(OSError):
            path.unlink()


def _owner_pid(name: str) -> int | None:
    parts = name.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
