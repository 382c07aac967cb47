"""A JSON-RPC client of one `codex app-server` process (newline-delimited JSON over stdio).

One reader task owns stdout: responses resolve their request's future, notifications go to the
queue of the thread they name (so concurrent turns on one process never see each other's
events), and server-to-client requests are answered (approvals declined; tool calls routed to a
per-thread handler). When the process dies every waiter is woken with a `crashed` error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__, fastjson
from .events import TurnError
from .isolation import INSIDE_WORK, Isolation, descendant_named
from .mailbox import Mailbox
from .process import STREAM_LIMIT, override_args, spawn, terminate
from .state_dir import SQLITE_HOME_ENV, StateDir

_LOGGER = logging.getLogger(__name__)

CRASHED = {"method": "_codexpool/crashed"}  # put on thread queues when the process dies
# Server->client approval requests and the answer that declines each (approvalPolicy is
# "never", so they should not come; if they do, nothing is ever approved on the server).
_DECLINE: dict[str, dict[str, Any]] = {
    "item/commandExecution/requestApproval": {"decision": "decline"},
    "item/fileChange/requestApproval": {"decision": "decline"},
    "execCommandApproval": {"decision": "denied"},
    "applyPatchApproval": {"decision": "denied"},
}

# Notifications nothing here reads. Codex 0.169.0 sends about 17 messages per chat turn, half
# of them these; opting out at initialize means they are never written, read or parsed.
QUIET_NOTIFICATIONS = (
    "thread/started",
    "thread/status/changed",
    "thread/settings/updated",
    "thread/readState/changed",
    "turn/started",
    "turn/diff/updated",
    "turn/plan/updated",
    "item/started",
    "item/completed",
    "item/plan/delta",
    "item/reasoning/summaryPartAdded",
    "hook/started",
    "hook/completed",
    "serverRequest/resolved",
    "skills/changed",
    "mcpServer/startupStatus/updated",
    "remoteControl/status/changed",
)

ToolHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
RateLimitHook = Callable[[dict[str, Any]], None]


class AppServer:
    """One running `codex app-server` bound to one CODEX_HOME (one account)."""

    def __init__(
        self,
        codex_bin: str,
        codex_home: Path,
        overrides: Sequence[str] = (),
        *,
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
        on_rate_limits: RateLimitHook | None = None,
        name: str = "",
        state: StateDir | None = None,
        isolation: Isolation | None = None,
    ) -> None:
        self._argv = [codex_bin, *override_args(overrides), "app-server"]
        self._home = codex_home
        # codex's SQLite home (state_dir.py): this process's alone, released by close().
        self.state = state
        self._env = dict(extra_env or {})
        if state is not None:
            self._env[SQLITE_HOME_ENV] = str(state.path)
        self._cwd = cwd
        # In a sandbox the model's commands cannot see the gateway's data (isolation.py);
        # `cwd` is then the folder shown at INSIDE_WORK.
        self._isolation = isolation
        self._codex_pid: int | None = None  # codex itself, under the sandbox's processes
        self._on_rate_limits = on_rate_limits
        self.name = name or str(codex_home)
        self.proc: asyncio.subprocess.Process | None = None
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._threads: dict[str, Mailbox] = {}
        self._tool_handlers: dict[str, ToolHandler] = {}
        self._outbox: list[bytes] = []  # encoded messages waiting for this iteration's write
        self._stdout: asyncio.BaseTransport | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.dead = False
        self.turns = 0  # chat turns started here (the engine reads the RSS every N of them)
        self.active = 0  # chat turns running here now
        self.retired = False  # replaced: ends once `active` drops to 0

    @property
    def alive(self) -> bool:
        """Tell whether the process is running and its stdout still open."""
        return self.proc is not None and self.proc.returncode is None and not self.dead

    @property
    def pid(self) -> int | None:
        """Return codex's process id (inside a sandbox: codex's, not the sandbox's)."""
        return self._codex_pid or (self.proc.pid if self.proc else None)

    async def start(self, wait_s: float = 30.0) -> None:
        """Spawn the process and complete the initialize handshake."""
        read_fd, write_fd = os.pipe()
        wrap = None
        if self._isolation is not None:
            wrap = functools.partial(
                self._isolation.command,
                codex_home=self._home,
                state_dir=self.state.path if self.state else None,
                workdir=self._cwd or self._home,
                inside_workdir=INSIDE_WORK,
            )
        try:
            self.proc = await spawn(
                self._argv,
                self._home,
                cwd=self._cwd,
                extra_env=self._env,
                stdout=write_fd,
                wrap=wrap,
            )
        except BaseException:
            os.close(read_fd)
            self._release_state()
            raise
        finally:
            os.close(write_fd)
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        # From here on the process runs: any failure or cancellation (a replacement being
        # abandoned) must end it.
        try:
            self._stdout, _ = await asyncio.get_running_loop().connect_read_pipe(
                lambda: LineReader(self._on_line, self._on_death, self.name), pipe
            )
            self._stderr_task = asyncio.create_task(self._read_stderr(), name=f"stderr-{self.name}")
            await self.request(
                "initialize",
                {
                    "clientInfo": {
                        "name": "codexpool",
                        "title": "codexpool",
                        "version": __version__,
                    },
                    "capabilities": {
                        "experimentalApi": True,
                        "optOutNotificationMethods": list(QUIET_NOTIFICATIONS),
                    },
                },
                wait_s=wait_s,
            )
            await self.notify("initialized")
            if self._isolation is not None:  # the memory recycling reads codex's own RSS
                self._codex_pid = await asyncio.to_thread(descendant_named, self.proc.pid, "codex")
        except BaseException:
            if self._stdout is None:
                pipe.close()
            await self.close()
            raise

    async def _send(self, message: dict[str, Any]) -> None:
        """Queue one message; every message queued in this loop iteration leaves in one write.

        A burst of requests (50 clients at once) would otherwise cost the gateway one pipe
        write, and codex one wake-up, per message.
        """
        if not self.alive or self.proc is None or self.proc.stdin is None:
            raise TurnError("crashed", self._death_message())
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(fastjson.dumps_line(message))
        try:
            await self.proc.stdin.drain()  # waits only while an earlier flush is backed up
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise TurnError("crashed", self._death_message()) from exc

    def _flush(self) -> None:
        data = b"".join(self._outbox)
        self._outbox.clear()
        stdin = self.proc.stdin if self.proc is not None else None
        if stdin is None or stdin.is_closing():
            return  # the reader sees the end of the process and fails every waiter
        stdin.write(data)

    async def request(self, method: str, params: Any = None, wait_s: float = 30.0) -> Any:
        """Send a request and return its result; JSON-RPC errors become TurnError."""
        rid = self._next_id
        self._next_id += 1
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending[rid] = fut
        # A plain timer on the future: cheaper than asyncio.timeout, which also cancels and
        # un-cancels the task.
        timer = loop.call_later(wait_s, _expire, fut, method, wait_s)
        try:
            await self._send({"id": rid, "method": method, "params": params})
            return await fut
        finally:
            timer.cancel()
            self._pending.pop(rid, None)

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification."""
        msg: dict[str, Any] = {"method": method}
        if params is not None:
            msg["params"] = params
        await self._send(msg)

    def subscribe(self, thread_id: str) -> Mailbox:
        """Return the mailbox that receives this thread's notifications."""
        mailbox = Mailbox(
            on_overflow=lambda: _LOGGER.warning(
                "A turn on codex app-server %s fell %s messages behind (a stalled client): "
                "its further output is dropped and the turn will end with an error",
                self.pid,
                mailbox.limit,
            )
        )
        self._threads[thread_id] = mailbox
        if self.dead:
            mailbox.put(CRASHED)
        return mailbox

    def unsubscribe(self, thread_id: str) -> None:
        """Stop routing a thread's notifications."""
        self._threads.pop(thread_id, None)
        self._tool_handlers.pop(thread_id, None)

    def set_tool_handler(self, thread_id: str, handler: ToolHandler) -> None:
        """Route this thread's `item/tool/call` requests to a handler."""
        self._tool_handlers[thread_id] = handler

    def post_to_thread(self, thread_id: str, message: dict[str, Any]) -> bool:
        """Put a message on a thread's queue (used to interrupt a turn from outside)."""
        mailbox = self._threads.get(thread_id)
        if mailbox is None:
            return False
        mailbox.put(message)
        return True

    def _release_state(self) -> None:
        if self.state is not None:
            self.state.release()

    def _death_message(self) -> str:
        tail = " | ".join(line for line in list(self.stderr_tail)[-3:] if line)
        code = self.proc.returncode if self.proc else None
        return f"the codex app-server stopped (exit {code}){': ' + tail if tail else ''}"

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with contextlib.suppress(ValueError, asyncio.LimitOverrunError, ConnectionError):
            async for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                self.stderr_tail.append(line[:500])
                _LOGGER.debug("codex[%s] %s", self.name, line[:500])

    def _on_line(self, raw: bytes) -> None:
        try:
            msg = fastjson.loads(raw)
        except ValueError:
            _LOGGER.debug("codex[%s] non-JSON stdout: %r", self.name, raw[:200])
            return
        if isinstance(msg, dict):
            self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method is None and "id" in msg:
            fut = self._pending.get(msg["id"])
            if fut is not None and not fut.done():
                if "error" in msg:
                    err = msg["error"] or {}
                    fut.set_exception(
                        TurnError("upstream", str(err.get("message") or err), http_status=None)
                    )
                else:
                    fut.set_result(msg.get("result"))
            return
        if method is None:
            return
        params = msg.get("params") or {}
        if "id" in msg:
            task = asyncio.create_task(self._answer(msg["id"], method, params))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if method == "account/rateLimits/updated" and self._on_rate_limits:
            try:
                self._on_rate_limits(params.get("rateLimits") or {})
            except Exception:
                _LOGGER.exception("rate-limit hook failed")
            return
        thread_id = params.get("threadId") if isinstance(params, dict) else None
        if thread_id is None and isinstance(params, dict):
            thread = params.get("thread")
            thread_id = thread.get("id") if isinstance(thread, dict) else None
        mailbox = self._threads.get(thread_id) if thread_id else None
        if mailbox is not None:
            mailbox.put(msg)

    async def _answer(self, rid: Any, method: str, params: dict[str, Any]) -> None:
        """Answer a server->client request."""
        reply: dict[str, Any]
        if method in _DECLINE:
            reply = {"id": rid, "result": _DECLINE[method]}
        elif method == "item/tool/call":
            handler = self._tool_handlers.get(params.get("threadId", ""))
            if handler is None:
                reply = {
                    "id": rid,
                    "result": {
                        "contentItems": [{"type": "inputText", "text": "tool unavailable"}],
                        "success": False,
                    },
                }
            else:
                try:
                    reply = {"id": rid, "result": await handler(params)}
                except Exception as exc:  # the turn must not hang on a failed handler
                    _LOGGER.exception("tool handler failed")
                    reply = {"id": rid, "error": {"code": -32000, "message": str(exc)}}
        else:
            _LOGGER.info("codex[%s] asked %s; declining", self.name, method)
            reply = {"id": rid, "error": {"code": -32601, "message": f"{method} not supported"}}
        with contextlib.suppress(TurnError):
            await self._send(reply)

    def _on_death(self) -> None:
        self.dead = True
        err = TurnError("crashed", self._death_message())
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        for mailbox in self._threads.values():
            mailbox.put(CRASHED)

    async def close(self, grace: float = 3.0) -> None:
        """Close stdin (codex exits on EOF), then end the process group and reap it."""
        proc = self.proc
        if proc is None:  # never spawned
            self._release_state()
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), min(grace, 1.0))
        except TimeoutError:
            pass
        await terminate(proc, grace)
        if self._stdout is not None:
            self._stdout.close()
        for task in (self._stderr_task, *self._tasks):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self.dead = True
        self._release_state()


def _expire(fut: asyncio.Future[Any], method: str, wait_s: float) -> None:
    if not fut.done():
        fut.set_exception(TurnError("timeout", f"codex did not answer {method} in {wait_s:.0f}s"))


class LineReader(asyncio.Protocol):
    """Reads codex's stdout: splits it into lines and hands each on as soon as it is whole.

    A protocol instead of a StreamReader and a task that loops on readline(): no task wake-up
    per read and no per-line buffer bookkeeping (every turn is about ten lines). A line longer
    than `limit` is dropped with an error, as the StreamReader did.
    """

    def __init__(
        self,
        on_line: Callable[[bytes], None],
        on_close: Callable[[], None],
        name: str = "",
        limit: int = STREAM_LIMIT,
    ) -> None:
        self._on_line = on_line
        self._on_close = on_close
        self._name = name
        self._limit = limit
        self._parts: list[bytes] = []  # the unfinished line, in pieces (no quadratic +=)
        self._size = 0
        self._dropping = False  # inside an over-long line

    def data_received(self, data: bytes) -> None:
        lines = data.split(b"\n")
        last = lines.pop()  # the unfinished tail (empty when data ended a line)
        on_line = self._on_line
        for line in lines:
            if self._parts:
                self._parts.append(line)
                line = b"".join(self._parts)
                self._parts.clear()
                self._size = 0
            if self._dropping:
                self._dropping = False  # the over-long line ends here
            elif line:
                on_line(line)
        if last and not self._dropping:
            self._parts.append(last)
            self._size += len(last)
            if self._size > self._limit:
                _LOGGER.error("codex[%s] sent an over-long line; dropping it", self._name)
                self._parts.clear()
                self._size = 0
                self._dropping = True

    def eof_received(self) -> None:
        """Hand on a last line that had no newline (as readline() did at EOF)."""
        if self._parts and not self._dropping:
            line = b"".join(self._parts)
            self._parts.clear()
            self._on_line(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_close()
