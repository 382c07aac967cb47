"""Warm `codex app-server` processes per account, and one chat turn as an async iterator.

Each linked account gets one long-lived app-server (started on first use, restarted after a
crash, stopped when idle). A chat turn runs on an ephemeral thread: a new one whose history is
injected first (`thread/inject_items`), or one a conversation already holds (ThreadSlot), which
keeps the upstream `prompt_cache_key` of the whole conversation. Several turns run at once on
one process, bounded per account by a semaphore.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .appserver import CRASHED, AppServer
from .catalog import write_chat_catalog
from .events import (
    CaughtUp,
    Event,
    Heartbeat,
    RateLimitSnapshot,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCalls,
    TurnDone,
    TurnError,
    Usage,
    error_from_turn,
    parse_rate_limits,
)
from .instructions import CLIENT, InstructionsPolicy
from .isolation import INSIDE_WORK, Isolation
from .process import rss_mib
from .state_dir import StateDirs, delete_logs

_LOGGER = logging.getLogger(__name__)

# Codex agent features a chat turn has no use for (codex-protocol.md section 8): turning them
# off halves time to first token and cuts the side requests and tools sent per turn.
LEAN_CHAT_OVERRIDES = (
    "features.apps=false",
    "features.plugins=false",
    "features.browser_use=false",
    "features.computer_use=false",
    "features.code_mode_host=false",
    "features.goals=false",
    "features.image_generation=false",
    "features.hooks=false",
    "features.shell_snapshot=false",
    "features.skill_search=false",
    "features.tool_suggest=false",
    "features.remote_plugin=false",
    "features.in_app_browser=false",
    "features.multi_agent=false",
    "features.shell_tool=false",
    "features.unified_exec=false",
    "features.view_image=false",
    'web_search="disabled"',
    "features.sleep_tool=false",
    "features.incremental_tools=false",
    "tools.experimental_request_user_input.enabled=false",
    "tools.update_plan.enabled=false",
)
CATALOG_FILE = "_chat-model-catalog.json"  # in scratch_root, beside the account folders
INTERRUPT = "_codexpool/interrupt"
TOOL_CALL = "_codexpool/tool-call"
# After a first function call, how long to wait for its parallel siblings before answering.
PARALLEL_CALL_WINDOW_S = 0.05


def tool_result(text: str, success: bool = True) -> dict[str, Any]:
    """Return the app-server's DynamicToolCallResponse for a text result."""
    return {"contentItems": [{"type": "inputText", "text": text}], "success": success}


@dataclass(frozen=True)
class EngineConfig:
    """What the engine needs from the settings."""

    codex_bin: str
    config_overrides: tuple[str, ...] = ()
    lean_chat: bool = True
    instructions: str = CLIENT  # chatInstructions: "client" or "codex" (instructions.py)
    base_instructions: str | None = None  # chatBaseInstructions
    max_turns_per_account: int = 4
    max_queue_wait_s: float = 5.0
    idle_shutdown_s: float = 900.0
    recycle_above_mib: int = 0  # replace an app-server whose RSS reached this (0: never)
    recycle_check_every: int = 16  # turns between two RSS readings of an app-server
    turn_timeout_cap_s: float = 300.0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    scratch_root: Path = Path("scratch")
    # Where each app-server gets its private SQLite home (state_dir.py); None leaves codex's
    # databases, its growing log database included, in the account's CODEX_HOME.
    state_root: Path | None = None
    # The sandbox of app-servers whose model can run commands (isolation.py); the lean
    # profile gives the model no command or file tool, so the app leaves it None there.
    isolation: Isolation | None = None
    request_timeout_s: float = 30.0
    heartbeat_s: float = 15.0


@dataclass
class ThreadSlot:
    """Which thread a turn continues, and (once it ran) which thread it ran on.

    In: `thread_id` of a thread kept from the conversation's last turn and `known`, how many
    items of the request's history that thread already holds. When the thread is no longer
    loaded (app-server recycled, crashed or stopped) the turn starts a new thread and injects
    the whole history. Out: `thread_id` of the thread used and `continued` (True when it was
    the kept one). The engine keeps the thread loaded for a next turn until
    `Engine.release_thread`.
    """

    thread_id: str | None = None
    known: int = 0
    continued: bool = False


@dataclass(frozen=True)
class TurnRequest:
    """One chat turn."""

    prompt: str  # the turn's user text ("" with no images: the turn continues the history)
    # The client's leading system/developer messages, joined (None: it sent none). Whether they
    # become the thread's base or developer instructions is the engine's choice (instructions.py).
    developer_instructions: str | None = None
    model: str | None = None
    effort: str | None = None
    timeout_s: float | None = None
    output_schema: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] = ()  # DynamicToolSpec objects (client functions)
    images: tuple[str, ...] = ()  # image URLs (https or data:) given to the model
    history: tuple[dict[str, Any], ...] = ()  # Responses items before the input (injected)
    web_search: str | None = None  # Codex's own web search for the thread: "live", "cached"
    thread: ThreadSlot | None = None  # keep the thread for the conversation's next turn


@dataclass
class _KeptThread:
    """A thread kept loaded for its conversation's next turn."""

    server: AppServer
    total: Usage  # the thread's cumulative token usage after its last turn
    codex_own: bool = False  # started with Codex's own instructions (instructions fallback)


ZERO_USAGE = Usage(0, 0, 0, 0)


@dataclass
class _Account:
    key: str
    home: Path
    sem: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    server: AppServer | None = None
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    limits: RateLimitSnapshot | None = None
    turns: dict[str, str] = field(default_factory=dict)  # thread id -> turn id (running)
    retiring: list[AppServer] = field(default_factory=list)  # replaced, finishing turns
    replacing: asyncio.Task[None] | None = None  # a replacement app-server starting
    kept: dict[str, _KeptThread] = field(default_factory=dict)  # conversation threads

    def servers(self) -> list[AppServer]:
        """Return the account's app-servers: the current one and those retiring."""
        return [s for s in (self.server, *self.retiring) if s is not None]


RateLimitCallback = Callable[[str, RateLimitSnapshot], None]


class Engine:
    """Owns every account's app-server; the only place codex chat processes are started."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._accounts: dict[str, _Account] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self.on_rate_limits: RateLimitCallback | None = None
        self.starts = 0  # app-server processes started (tests and metrics)
        self.recycles = 0  # app-servers replaced for their memory (metrics)
        # (wall time, account key) of each app-server found dead and restarted: crash loops
        # are alerted on (alerts.py). Bounded: only the recent ones matter.
        self.crashes: collections.deque[tuple[float, str]] = collections.deque(maxlen=256)
        self._lean_overrides: tuple[str, ...] = LEAN_CHAT_OVERRIDES
        self._background: set[asyncio.Task[None]] = set()  # closing retired app-servers
        self._state = StateDirs(config.state_root) if config.state_root is not None else None
        self.instructions = InstructionsPolicy(config.instructions, config.base_instructions)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Build the chat model catalog (lean profile) and start the idle reaper."""
        if self.config.lean_chat:
            catalog = await write_chat_catalog(
                self.config.codex_bin,
                self.config.scratch_root / CATALOG_FILE,
                self.config.extra_env,
            )
            if catalog is not None:
                self._lean_overrides = (
                    *LEAN_CHAT_OVERRIDES,
                    f"model_catalog_json={json.dumps(str(catalog))}",
                )
        if self._state is not None:
            stale = await asyncio.to_thread(self._state.clear_stale)
            if stale:
                _LOGGER.info("Removed %s codex state directories left by an earlier run", stale)
        self._reaper = asyncio.create_task(self._reap_idle(), name="appserver-reaper")

    async def close(self) -> None:
        """Stop every app-server process group (no orphans, no zombies)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(
            *(self.stop_account(key) for key in list(self._accounts)), return_exceptions=True
        )
        await asyncio.gather(*self._background, return_exceptions=True)

    def live_processes(self) -> int:
        """Return how many app-server processes are running (retiring ones included)."""
        return sum(1 for a in self._accounts.values() for s in a.servers() if s.alive)

    def latest_limits(self, account_key: str) -> RateLimitSnapshot | None:
        """Return the freshest limits seen for an account (read or pushed)."""
        acct = self._accounts.get(account_key)
        return acct.limits if acct else None

    def _account(self, key: str, home: Path) -> _Account:
        acct = self._accounts.get(key)
        if acct is None or acct.home != home:
            acct = _Account(key, home, asyncio.Semaphore(self.config.max_turns_per_account))
            self._accounts[key] = acct
        return acct

    def _take_limits(self, acct: _Account, raw: Any) -> None:
        snapshot = parse_rate_limits(raw)
        if snapshot is None:
            return
        acct.limits = snapshot.merged_over(acct.limits)
        if self.on_rate_limits is not None:
            try:
                self.on_rate_limits(acct.key, acct.limits)
            except Exception:
                _LOGGER.exception("on_rate_limits hook failed")

    async def _server(self, acct: _Account) -> AppServer:
        """Return the account's running app-server, starting (or restarting) it once."""
        if acct.server is not None and acct.server.alive:
            return acct.server
        async with acct.lock:
            if acct.server is not None and acct.server.alive:
                return acct.server
            if self._closed:
                raise TurnError("shutdown", "the gateway is shutting down")
            if acct.server is not None:
                _LOGGER.warning("codex app-server of account %s died; restarting", acct.key)
                self.crashes.append((time.time(), acct.key))
                await acct.server.close()
            acct.server = await self._start_server(acct)
            return acct.server

    async def _start_server(self, acct: _Account) -> AppServer:
        """Start a new app-server for the account (not yet its current one)."""
        overrides = list(self.config.config_overrides)
        if self.config.lean_chat:
            overrides = [*self._lean_overrides, *overrides]
        scratch = self.config.scratch_root / acct.key
        scratch.mkdir(parents=True, exist_ok=True)
        state = None
        if self._state is not None:
            delete_logs(acct.home)  # one an older gateway let codex keep there
            try:
                state = self._state.create(acct.key)
            except OSError as exc:  # a full or read-only data disk: a clean 502, not a 500
                raise TurnError("crashed", f"cannot create codex's state directory: {exc}") from exc
        server = AppServer(
            self.config.codex_bin,
            acct.home,
            overrides,
            extra_env=dict(self.config.extra_env),
            cwd=scratch,
            on_rate_limits=lambda raw: self._take_limits(acct, raw),
            name=acct.key,
            state=state,
            isolation=self.config.isolation,
        )
        try:
            await server.start(self.config.request_timeout_s)
        except FileNotFoundError as exc:
            raise TurnError("crashed", f"codex binary not found: {exc.filename}") from exc
        except OSError as exc:
            raise TurnError("crashed", f"cannot start codex: {exc}") from exc
        self.starts += 1
        _LOGGER.info("Started codex app-server for account %s (pid %s)", acct.key, server.pid)
        return server

    def _count_turn(self, acct: _Account, server: AppServer) -> None:
        """Count a turn on its app-server; once its memory reached the recycle mark (read
        every `recycle_check_every` turns: a /proc read costs more than a whole turn's JSON),
        start its replacement."""
        server.turns += 1
        server.active += 1
        limit = self.config.recycle_above_mib
        if (
            not limit
            or server.turns % self.config.recycle_check_every
            or server.retired
            or acct.replacing is not None
        ):
            return
        rss = rss_mib(server.pid)
        if rss is not None and rss >= limit:
            acct.replacing = asyncio.create_task(
                self._replace(acct, server, rss), name=f"appserver-replace-{acct.key}"
            )

    async def _replace(self, acct: _Account, old: AppServer, rss: float) -> None:
        """Start a fresh app-server beside `old`, warm it, then make it current and retire
        `old`. Turns keep running on `old` meanwhile, so nobody waits for the new one.
        """
        try:
            try:
                new = await self._start_server(acct)
            except (TurnError, OSError) as exc:
                _LOGGER.warning(
                    "Could not start a replacement app-server for %s: %s", acct.key, exc
                )
                return
            try:
                # Codex's first thread/start in a process costs ~2x the later ones (44 vs
                # 10-22 ms): pay it here rather than in the next client's first token.
                with contextlib.suppress(TurnError):
                    await new.request(
                        "thread/start",
                        self._thread_params(acct, TurnRequest(prompt="")),
                        wait_s=self.config.request_timeout_s,
                    )
                async with acct.lock:
                    current = self._accounts.get(acct.key) is acct and acct.server is old
                    if self._closed or not current:
                        await new.close()  # stopped or restarted meanwhile: not needed
                        return
                    acct.server = new
            except BaseException:
                await new.close()
                raise
            _LOGGER.info(
                "Recycled codex app-server of account %s at %.0f MiB after %s turns (pid %s -> %s)",
                acct.key,
                rss,
                old.turns,
                old.pid,
                new.pid,
            )
            self.recycles += 1
            old.retired = True
            if old.active:
                acct.retiring.append(old)  # ends with its last turn (_turn_ended)
            else:
                self._close_later(old)
        finally:
            acct.replacing = None

    def _thread_params(self, acct: _Account, request: TurnRequest) -> dict[str, Any]:
        """Return the `thread/start` parameters of a chat turn."""
        params: dict[str, Any] = {
            "cwd": str(
                INSIDE_WORK if self.config.isolation else self.config.scratch_root / acct.key
            ),
            "approvalPolicy": "never",
            "sandbox": "read-only",
            "ephemeral": True,
        }
        params.update(self.instructions.thread_params(acct.key, request.developer_instructions))
        if request.model:
            params["model"] = request.model
        if request.tools:
            params["dynamicTools"] = list(request.tools)
        if request.web_search:  # the lean profile turns it off for the whole app-server
            params["config"] = {**params.get("config", {}), "web_search": request.web_search}
        return params

    def _turn_ended(self, acct: _Account, server: AppServer) -> None:
        server.active -= 1
        if server.retired and server.active == 0 and server in acct.retiring:
            acct.retiring.remove(server)
            self._close_later(server)

    def _close_later(self, server: AppServer) -> None:
        task = asyncio.create_task(server.close(), name=f"appserver-close-{server.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop_account(self, account_key: str | int) -> None:
        """Stop an account's app-server (unlink, deletion, idle, shutdown)."""
        acct = self._accounts.pop(str(account_key), None)
        if acct is None:
            return
        if acct.replacing is not None:
            acct.replacing.cancel()
        servers = acct.servers()
        acct.server, acct.retiring = None, []
        for server in servers:
            for thread_id in list(acct.turns):
                server.post_to_thread(thread_id, CRASHED)
        await asyncio.gather(*(s.close() for s in servers), return_exceptions=True)
        if servers:
            _LOGGER.info("Stopped codex app-server of account %s", acct.key)

    def kept_threads(self, account_key: str) -> int:
        """Return how many conversation threads the account's app-servers keep (tests)."""
        acct = self._accounts.get(str(account_key))
        return len(acct.kept) if acct else 0

    async def release_thread(self, account_key: str, thread_id: str) -> None:
        """Forget a conversation's thread and unsubscribe from it on its app-server.

        codex 0.169 keeps an ephemeral thread loaded even after `thread/unsubscribe` (see
        docs/codex-protocol-notes.md): its memory goes when the app-server is recycled at its
        RSS mark, so the number of conversations per account is bounded as well.
        """
        acct = self._accounts.get(str(account_key))
        kept = acct.kept.pop(thread_id, None) if acct else None
        if kept is None or not kept.server.alive:
            return
        # asyncio.timeout, not wait_for: no second task per release. Every one-shot request
        # evicts an older conversation once the account holds its maximum, so this runs as
        # often as requests do.
        with contextlib.suppress(TurnError, asyncio.CancelledError, Exception):
            async with asyncio.timeout(5.0):
                await kept.server.request("thread/unsubscribe", {"threadId": thread_id}, 5.0)

    def _kept_thread(self, acct: _Account, slot: ThreadSlot | None) -> _KeptThread | None:
        """Return the slot's thread if it is still loaded on the account's current app-server."""
        if slot is None or slot.thread_id is None:
            return None
        kept = acct.kept.get(slot.thread_id)
        if kept is None:
            return None
        if (
            kept.server is not acct.server
            or not kept.server.alive
            or kept.server.retired
            # The account fell back to Codex's instructions since: a thread started with the
            # client's would be refused again, with no fallback left for this request.
            or kept.codex_own != self.instructions.uses_codex_own(acct.key)
        ):
            acct.kept.pop(slot.thread_id, None)  # gone with its process
            return None
        return kept

    def interrupt_all(self, message: str) -> int:
        """Interrupt every running turn (graceful shutdown); return how many."""
        count = 0
        for acct in self._accounts.values():
            for server in acct.servers():
                for thread_id in list(acct.turns):
                    if server.post_to_thread(
                        thread_id, {"method": INTERRUPT, "params": {"message": message}}
                    ):
                        count += 1
        return count

    async def read_rate_limits(self, account_key: str, codex_home: Path) -> RateLimitSnapshot:
        """Read an account's limits through its app-server (`account/rateLimits/read`)."""
        acct = self._account(account_key, codex_home)
        server = await self._server(acct)
        acct.last_used = time.monotonic()
        result = await server.request(
            "account/rateLimits/read", None, wait_s=self.config.request_timeout_s
        )
        snapshot = parse_rate_limits(result)
        if snapshot is None:
            raise TurnError("upstream", "codex returned no rate limits")
        self._take_limits(acct, result.get("rateLimits") if isinstance(result, dict) else None)
        return snapshot

    async def list_models(self, account_key: str, codex_home: Path) -> list[dict[str, Any]]:
        """Return Codex's model list for an account (empty on failure)."""
        acct = self._account(account_key, codex_home)
        try:
            server = await self._server(acct)
            result = await server.request("model/list", {}, wait_s=self.config.request_timeout_s)
        except TurnError as exc:
            _LOGGER.info("model/list failed for account %s: %s", account_key, exc.message)
            return []
        data = result.get("data") if isinstance(result, dict) else None
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    async def run_turn(
        self, account_key: str, codex_home: Path, request: TurnRequest
    ) -> AsyncGenerator[Event, None]:
        """Run one chat turn and yield its events; raises TurnError on failure.

        Stopping the iteration early (client gone) interrupts the turn on the app-server.
        """
        acct = self._account(account_key, codex_home)
        await self._take_slot(acct)
        acct.active += 1
        server: AppServer | None = None
        thread_id: str | None = None
        turn_id: str | None = None
        finished = False
        replies: list[asyncio.Future[dict[str, Any]]] = []
        try:
            cap = self.config.turn_timeout_cap_s
            timeout = min(request.timeout_s or cap, cap)
            deadline = time.monotonic() + timeout
            server = await self._server(acct)
            self._count_turn(acct, server)
            slot = request.thread
            kept = self._kept_thread(acct, slot)
            history = request.history
            if kept is not None and slot is not None and slot.thread_id is not None:
                thread_id = slot.thread_id
                history = history[slot.known :]
                before = kept.total
                codex_own = kept.codex_own
            else:
                codex_own = self.instructions.uses_codex_own(acct.key)
                started = await server.request(
                    "thread/start",
                    self._thread_params(acct, request),
                    wait_s=self.config.request_timeout_s,
                )
                thread_id = str(started["thread"]["id"])
                before = ZERO_USAGE
            if slot is not None:
                slot.thread_id, slot.continued = thread_id, kept is not None
                acct.kept.pop(thread_id, None)  # in use: kept again once the turn completed
            if history:
                await server.request(
                    "thread/inject_items",
                    {"threadId": thread_id, "items": list(history)},
                    wait_s=self.config.request_timeout_s,
                )
            mailbox = server.subscribe(thread_id)
            if request.tools:
                server.set_tool_handler(thread_id, self._tool_handler(server, thread_id, replies))
            turn_params: dict[str, Any] = {
                "threadId": thread_id,
                "input": [
                    *(
                        [{"type": "text", "text": request.prompt, "text_elements": []}]
                        if request.prompt or not (request.images or history or kept)
                        else []
                    ),
                    *({"type": "image", "url": url} for url in request.images),
                ],
            }
            if request.model:
                turn_params["model"] = request.model
            if request.effort:
                turn_params["effort"] = request.effort
            if request.output_schema is not None:
                turn_params["outputSchema"] = request.output_schema
            turn = await server.request(
                "turn/start", turn_params, wait_s=self.config.request_timeout_s
            )
            turn_id = str(turn["turn"]["id"])
            acct.turns[thread_id] = turn_id
            usage: Usage | None = None
            fatal: TurnError | None = None
            backlog: collections.deque[dict[str, Any]] = collections.deque()
            unflushed = False  # a delta went out since the last CaughtUp
            while True:
                if mailbox.overflowed:  # the reader fell MAX_BACKLOG messages behind codex
                    raise TurnError("slow_client", "the client read the answer too slowly")
                if backlog:
                    msg = backlog.popleft()
                elif mailbox:  # already here: no clock read, no timer
                    msg = mailbox.get_nowait()
                elif unflushed:
                    unflushed = False
                    yield CaughtUp()
                    continue
                else:
                    # The deadline is checked whenever the turn waits, which it does after
                    # every read from codex: a stream that never pauses cannot outrun it.
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TurnError(
                            "timeout", f"the Codex turn took longer than {timeout:.0f}s"
                        )
                    wait = min(remaining, self.config.heartbeat_s)
                    if not await mailbox.wait(wait) and wait < remaining:
                        yield Heartbeat()
                    continue
                method = msg.get("method")
                params = msg.get("params") or {}
                if method == "item/agentMessage/delta":
                    unflushed = True
                    yield TextDelta(str(params.get("delta", "")))
                elif method in ("item/reasoning/summaryTextDelta", "item/reasoning/textDelta"):
                    unflushed = True
                    # summaryIndex: which part of the summary (each a paragraph of its own).
                    index = params.get("summaryIndex")
                    yield ReasoningDelta(
                        str(params.get("delta", "")), index if isinstance(index, int) else 0
                    )
                elif method == "thread/tokenUsage/updated":
                    # The thread's running total: this turn's own usage is what it added.
                    total = (params.get("tokenUsage") or {}).get("total") or {}
                    usage = Usage(
                        int(total.get("inputTokens") or 0),
                        int(total.get("cachedInputTokens") or 0),
                        int(total.get("outputTokens") or 0),
                        int(total.get("reasoningOutputTokens") or 0),
                    )
                elif method == "error":
                    if not params.get("willRetry"):
                        fatal = error_from_turn(params.get("error"))
                elif method == "turn/completed":
                    finished = True
                    t = params.get("turn") or {}
                    status = t.get("status")
                    if status == "completed":
                        if slot is not None:  # kept for the conversation's next turn
                            acct.kept[thread_id] = _KeptThread(server, usage or before, codex_own)
                        if usage is not None:
                            yield usage.minus(before)
                        yield TurnDone("completed")
                        return
                    if status == "failed":
                        raise self._with_reset(acct, fatal or error_from_turn(t.get("error")))
                    raise TurnError("interrupted", "the Codex turn was interrupted")
                elif msg is CRASHED:
                    finished = True
                    raise TurnError("crashed", server._death_message())
                elif method == TOOL_CALL:
                    calls = [params]
                    await asyncio.sleep(PARALLEL_CALL_WINDOW_S)
                    while mailbox:
                        extra = mailbox.get_nowait()
                        if extra.get("method") == TOOL_CALL:
                            calls.append(extra.get("params") or {})
                        else:
                            backlog.append(extra)
                    # Parked, the turn keeps its slot: its thread stays alive on the
                    # app-server. Parked turns never block new work: a turn that finds the
                    # account full closes the oldest parked one first (tool_turns.py).
                    yield ToolCalls(tuple(self._to_call(c) for c in calls))
                    # The client took its time to run the functions: the deadline restarts.
                    deadline = max(deadline, time.monotonic() + timeout)
                elif method == INTERRUPT:
                    raise TurnError("shutdown", str(params.get("message", "interrupted")))
        finally:
            if thread_id is not None:
                acct.turns.pop(thread_id, None)
            if not finished and server is not None and turn_id is not None and server.alive:
                # Client gone, deadline or shutdown: stop spending the account's quota.
                with contextlib.suppress(TurnError, asyncio.CancelledError, Exception):
                    await asyncio.wait_for(
                        server.request(
                            "turn/interrupt", {"threadId": thread_id, "turnId": turn_id}, 5.0
                        ),
                        5.0,
                    )
            if thread_id is not None:
                for reply in replies:  # a parked turn that expired: let codex's request end
                    if not reply.done():
                        reply.set_result(tool_result("The client did not return a result.", False))
            if server is not None and thread_id is not None:
                server.unsubscribe(thread_id)
            if server is not None:
                self._turn_ended(acct, server)
            acct.active -= 1
            acct.last_used = time.monotonic()
            acct.sem.release()

    def active_turns(self, account_key: str) -> int:
        """Return how many turns run or wait on an account now (a cluster node hands only
        idle accounts to another node)."""
        acct = self._accounts.get(account_key)
        return acct.active if acct is not None else 0

    def has_free_slot(self, account_key: str) -> bool:
        """Tell whether a turn on this account would start without waiting for a slot."""
        acct = self._accounts.get(account_key)
        return acct is None or not acct.sem.locked()

    async def _take_slot(self, acct: _Account) -> None:
        """Take one of the account's turn slots, waiting in line up to the queue deadline."""
        try:
            if acct.sem.locked():  # full: wait in line
                await asyncio.wait_for(acct.sem.acquire(), self.config.max_queue_wait_s)
            else:  # a free slot (the usual case) costs no waiter task
                await acct.sem.acquire()
        except TimeoutError as exc:
            raise TurnError(
                "busy", f"account {acct.key} already runs its maximum of concurrent turns"
            ) from exc

    @staticmethod
    def _tool_handler(
        server: AppServer, thread_id: str, replies: list[asyncio.Future[dict[str, Any]]]
    ) -> Callable[[dict[str, Any]], Any]:
        """Return the handler that turns codex's `item/tool/call` into a ToolCall event."""

        async def handle(params: dict[str, Any]) -> dict[str, Any]:
            reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            replies.append(reply)
            if not server.post_to_thread(
                thread_id, {"method": TOOL_CALL, "params": {**params, "_reply": reply}}
            ):
                return tool_result("The turn is gone.", False)
            return await reply

        return handle

    @staticmethod
    def _to_call(params: dict[str, Any]) -> ToolCall:
        arguments = params.get("arguments")
        text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        return ToolCall(
            str(params.get("callId") or ""), str(params.get("tool") or ""), text, params["_reply"]
        )

    def _with_reset(self, acct: _Account, err: TurnError) -> TurnError:
        """Attach the reset time of the exhausted window to a usage-limit error."""
        if err.kind == "usage_limit" and err.resets_at is None and acct.limits is not None:
            windows = [w for w in (acct.limits.primary, acct.limits.secondary) if w is not None]
            full = [w for w in windows if w.used_percent >= 100 and w.resets_at]
            pick = full or [w for w in windows if w.resets_at]
            if pick:
                err.resets_at = max(w.resets_at for w in pick if w.resets_at)
        return err

    async def _reap_idle(self) -> None:
        period = max(1.0, min(30.0, self.config.idle_shutdown_s / 2))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for acct in list(self._accounts.values()):
                if (
                    acct.server is not None
                    and acct.active == 0
                    and not acct.kept  # conversations continue there (released when idle)
                    and now - acct.last_used > self.config.idle_shutdown_s
                ):
                    _LOGGER.info("Account %s idle: stopping its codex app-server", acct.key)
                    # Not awaited here: close() cancels this reaper, and a stop cut short
                    # would leave the process's pipes open. close() waits for it instead.
                    task = asyncio.create_task(
                        self.stop_account(acct.key), name=f"appserver-idle-stop-{acct.key}"
                    )
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
