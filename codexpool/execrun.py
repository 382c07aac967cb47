"""Run `codex exec --json` for the execute endpoint: one process group per run, a deadline,
and a registry of live runs so shutdown can interrupt them and metrics can count them.

Whatever ends a run (the last event, the deadline, a client that went away, shutdown) ends the
whole process group: codex's own children (shell commands the agent ran) go with it. With an
`Isolation`, each run is a bubblewrap sandbox (codex/isolation.py) that shows the run its `cwd`,
its account's home and a private /tmp, never the gateway's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Literal

from .codex.isolation import Isolation
from .codex.process import child_env, terminate
from .codex.state_dir import EXEC_PREFIX, SQLITE_HOME_ENV, StateDirs

_LOGGER = logging.getLogger(__name__)
TERM_GRACE_S = 3.0
STDERR_TAIL = 20
MAX_LINE = 16 * 1024 * 1024  # an item can carry a whole command's output


class ExecStopped(Exception):
    """The run was stopped before codex finished (`kind` `timeout` or `shutdown`) or could
    not start (`unavailable`)."""

    def __init__(self, kind: Literal["timeout", "shutdown", "unavailable"], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class ExecRun:
    """One live `codex exec` process; `stop()` ends it from outside (shutdown)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stopped: ExecStopped | None = None
        self.stderr_tail: list[str] = []
        self._stop_event = asyncio.Event()

    def stop(self, reason: ExecStopped) -> None:
        """Ask the run to end now; its reader raises `reason`."""
        if self.stopped is None:
            self.stopped = reason
        self._stop_event.set()

    async def wait_stopped(self) -> None:
        """Return when stop() was called."""
        await self._stop_event.wait()


class Executions:
    """The live execute runs of one app."""

    def __init__(self, state_root: Path | None = None, isolation: Isolation | None = None) -> None:
        # Each run's private SQLite home for codex (codex/state_dir.py); None: CODEX_HOME's.
        self._state = StateDirs(state_root) if state_root is not None else None
        self._isolation = isolation
        self._runs: set[ExecRun] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def live(self) -> int:
        """Return how many codex exec processes run now."""
        return len(self._runs)

    def stop_all(self, message: str) -> int:
        """Interrupt every live run (graceful shutdown past its grace period); return how many."""
        runs = list(self._runs)
        for run in runs:
            run.stop(ExecStopped("shutdown", message))
        return len(runs)

    async def close(self) -> None:
        """Interrupt what is left and wait until every process group is gone."""
        self.stop_all("The server is shutting down.")
        await self._idle.wait()

    async def events(
        self,
        argv: list[str],
        prompt: str,
        codex_home: Path,
        timeout_s: float,
        *,
        cwd: Path | None = None,
        writable: bool = True,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Start the run in `cwd` (writable or not) and yield its JSON events; the last one is
        `{"type": "exit", ...}`.

        Raises ExecStopped on the deadline or a stop(); in every case (also when the caller
        stops iterating) the process group is ended before this generator finishes.
        """
        state = self._state.create(f"{EXEC_PREFIX}{codex_home.name}") if self._state else None
        try:
            env = child_env(codex_home, {SQLITE_HOME_ENV: str(state.path)} if state else None)
            if self._isolation is not None:
                argv, env = self._isolation.command(
                    argv,
                    env,
                    codex_home=codex_home,
                    state_dir=state.path if state else None,
                    workdir=cwd or codex_home,
                    workdir_writable=writable,
                )
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,  # its own process group: ended as one
                limit=MAX_LINE,
            )
        except OSError as exc:  # no bwrap, or a sandbox that cannot be built: never unconfined
            if state is not None:
                state.release()
            raise ExecStopped("unavailable", f"cannot start codex: {exc}") from exc
        except BaseException:
            if state is not None:
                state.release()
            raise
        run = ExecRun(proc)
        self._runs.add(run)
        self._idle.clear()
        stderr_task = asyncio.create_task(self._drain_stderr(run), name="exec-stderr")
        deadline = time.monotonic() + timeout_s
        try:
            assert proc.stdin is not None and proc.stdout is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(prompt.encode())
                await proc.stdin.drain()
                proc.stdin.close()
            stop_wait = asyncio.create_task(run.wait_stopped())
            try:
                while True:
                    read = asyncio.ensure_future(proc.stdout.readline())
                    remaining = deadline - time.monotonic()
                    done, _ = await asyncio.wait(
                        {read, stop_wait},
                        timeout=max(0.0, remaining),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if read not in done:
                        read.cancel()
                        with contextlib.suppress(BaseException):
                            await read
                        if run.stopped is not None:
                            raise run.stopped
                        raise ExecStopped("timeout", f"codex exec ran past {timeout_s:g}s")
                    line = read.result()
                    if not line:
                        break
                    event = _decode(line)
                    if event is not None:
                        yield event
            finally:
                stop_wait.cancel()
            code = await proc.wait()
            await stderr_task
            yield {"type": "exit", "exit_code": code, "stderr": run.stderr_tail[-5:]}
        finally:
            await terminate(proc, TERM_GRACE_S)
            stderr_task.cancel()
            with contextlib.suppress(BaseException):
                await stderr_task
            self._runs.discard(run)
            if state is not None:
                state.release()  # after the process group ended
            if not self._runs:
                self._idle.set()

    @staticmethod
    async def _drain_stderr(run: ExecRun) -> None:
        assert run.proc.stderr is not None
        async for raw in run.proc.stderr:
            text = raw.decode(errors="replace").rstrip()
            if text:
                run.stderr_tail = [*run.stderr_tail[-(STDERR_TAIL - 1) :], text]


def _decode(line: bytes) -> dict[str, Any] | None:
    """Return one JSONL event, or None for a line that is not a JSON object (logged)."""
    try:
        event = json.loads(line)
    except ValueError:
        _LOGGER.debug("Non-JSON line from codex exec: %r", line[:200])
        return None
    return event if isinstance(event, dict) else None
