"""Spawning and ending codex subprocesses: argument lists, own process group, clean env.

Every codex process gets its own session (process group) so that ending it also ends anything it
started (sandbox helpers, MCP servers): terminate the group, wait, kill the group, reap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

# Variables that would redirect codex away from the account's own login or endpoints; a
# production gateway never lets its own environment leak them into an account's process.
STRIPPED_ENV = (
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "CODEX_API_KEY",
    "CODEX_ACCESS_TOKEN",
    "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
    "CODEX_REVOKE_TOKEN_URL_OVERRIDE",
    "CODEX_APP_SERVER_LOGIN_ISSUER",
    "CODEX_APP_SERVER_LOGIN_CLIENT_ID",
    "CODEX_APP_SERVER_CHATGPT_BASE_URL",
    # our own secrets: a codex child never needs them
    "ADMIN_PASSWORD",
    "OPENAI_KEY_ENCRYPTION_SECRET",
)
STREAM_LIMIT = 64 * 1024 * 1024  # one JSON-RPC line can carry a whole turn's items
# Turns a codex command line and environment into the sandboxed ones (codex/isolation.py).
Wrapper = Callable[[list[str], dict[str, str]], tuple[list[str], dict[str, str]]]


def child_env(
    codex_home: Path,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the environment of a codex child: ours minus redirecting variables and our own
    settings (`CODEXPOOL_*`), plus its CODEX_HOME and any explicit extras."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if k not in STRIPPED_ENV and not k.startswith("CODEXPOOL_")
    }
    env["CODEX_HOME"] = str(codex_home)
    env.update(extra or {})
    return env


def override_args(overrides: Sequence[str]) -> list[str]:
    """Return `-c key=value` pairs for codex."""
    args: list[str] = []
    for item in overrides:
        args += ["-c", item]
    return args


async def spawn(
    argv: Sequence[str],
    codex_home: Path,
    *,
    cwd: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    stdin: int | None = asyncio.subprocess.PIPE,
    stdout: int = asyncio.subprocess.PIPE,
    wrap: Wrapper | None = None,
) -> asyncio.subprocess.Process:
    """Start a codex process in its own process group with piped stdio (or `stdout`, a file
    descriptor the caller reads itself); `wrap` runs it inside a sandbox."""
    codex_home.mkdir(parents=True, exist_ok=True, mode=0o700)  # noqa: ASYNC240 (tiny, local)
    args, env = list(argv), child_env(codex_home, extra_env)
    if wrap is not None:
        args, env = wrap(args, env)
    return await asyncio.create_subprocess_exec(
        *args,
        stdin=stdin,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(cwd or codex_home),
        env=env,
        start_new_session=True,
        limit=STREAM_LIMIT,
    )


def proc_table() -> Iterator[tuple[int, str, str, int, int]]:
    """Yield (pid, command name, state, parent pid, process group) of every process, read
    from /proc (blocking: ~1 ms for a few hundred processes)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rparen = stat.rfind(")")
        fields = stat[rparen + 2 :].split()
        name = stat[stat.find("(") + 1 : rparen]
        yield int(entry.name), name, fields[0], int(fields[1]), int(fields[2])


def rss_mib(pid: int | None) -> float | None:
    """Return a process's resident memory in MiB (None where /proc cannot tell)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def terminate(proc: asyncio.subprocess.Process, grace: float = 3.0) -> int | None:
    """End the process group: SIGTERM, wait up to `grace`, SIGKILL, then reap."""
    if proc.returncode is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            _LOGGER.warning("codex pid %s ignored SIGTERM; killing its group", proc.pid)
    # Children of the group may outlive the leader: always sweep the group.
    _signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()
    return proc.returncode
