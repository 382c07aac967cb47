"""A private SQLite home for every codex process the gateway starts, removed when it ends.

codex 0.169.0 keeps its SQLite databases in CODEX_HOME unless `CODEX_SQLITE_HOME` says
otherwise. One of them, `logs_2.sqlite`, takes ~50 TRACE/DEBUG rows per chat turn whatever
`RUST_LOG` says, may hold pieces of the conversation, and is capped per thread and by a 10-day
retention only. The gateway starts one ephemeral thread per request, so on a busy account
that file grows by tens of KiB per request for ten days, on disk, with other users' prompts
in it (docs/codex-protocol-notes.md). Nothing the gateway runs reads any of those databases
back: chat turns and execute runs are ephemeral, logins live in auth.json. So each process
gets a fresh directory, named after the gateway's pid so a later start can tell leftovers of
a dead gateway from another live one, and the directory goes with the process. Its size is
then bounded by the process's life, which memory recycling and the idle stop bound already.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

ENV = "CODEX_SQLITE_HOME"
# What codex 0.169.0 calls its log database (+ -wal, -shm) when it writes it into CODEX_HOME.
LEGACY_LOG_GLOB = "logs_*.sqlite*"

_sequence = itertools.count(1)


class StateDirs:
    """Hands out the private SQLite homes under one root (`<dataDir>/codex-state`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, name: str) -> Path:
        """Create a fresh directory for one process: `<name>.<gateway pid>.<n>`."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root / f"{name}.{os.getpid()}.{next(_sequence)}"
        path.mkdir(mode=0o700)
        return path

    def clear_stale(self) -> int:
        """Remove the directories a gateway that is no longer running left behind (a crash or
        SIGKILL skips the clean-up); return how many went."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.iterdir():
            pid = _owner_pid(path.name)
            if pid is not None and pid != os.getpid() and _running(pid):
                continue  # another gateway on the same data directory still uses it
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        return removed


def discard(path: Path | None) -> None:
    """Remove a process's directory once the process has ended.

    Synchronous on purpose: it runs in `finally` blocks and at shutdown, where an await could
    be cancelled and leave the directory behind; unlinking a handful of files costs well
    under a millisecond."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def discard_legacy_logs(codex_home: Path) -> None:
    """Remove the log database codex wrote into an account's CODEX_HOME before the gateway
    gave it a SQLite home of its own: codex no longer opens it, so nothing would ever prune
    it again."""
    for path in codex_home.glob(LEGACY_LOG_GLOB):
        with contextlib.suppress(OSError):
            path.unlink()
            _LOGGER.info("Removed codex's old log database %s", path)


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
