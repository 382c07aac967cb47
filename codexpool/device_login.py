"""Per-user Codex device login: `codex login --device-auth` as a small state machine.

States: idle -> starting -> awaiting_user -> linked | failed | expired | cancelled.
The CLI prints the verification link and the one-time code on stdout (with ANSI colours even
without a TTY), polls the issuer itself for up to 15 minutes, writes `auth.json` into the
user's CODEX_HOME and exits 0. We read its output line by line, keep the last lines (redacted)
for the portal, and after exit 0 confirm with `codex login status`.

One flow per user: a new start cancels the old one, and cancel/shutdown end the whole process
group, so no codex process outlives its flow. Each flow is a codex process (~50 MiB): at most
`maxDeviceLogins` run at once in the gateway (60 throwaway registrations once started 60 of
them, 3.1 GiB), further starts get a 429 with the time until the oldest flow's code expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import audit, linking
from .codex.process import child_env, terminate
from .config import Settings
from .errors import ApiError
from .store import Store

_LOGGER = logging.getLogger(__name__)

DEVICE_CODE_TTL_S = 15 * 60  # the CLI's own max wait (codex-protocol.md 3.1)
START_WAIT_S = 10.0  # how long `start` waits for the link and code before answering
HELPER_TIMEOUT_S = 20.0  # `codex login status` / `codex logout`
TERM_GRACE_S = 3.0
MAX_LOG_LINES = 50
MAX_LINE_CHARS = 500
TERMINAL_STATES = frozenset({"linked", "failed", "expired", "cancelled"})
LOGINS_BUSY = "device_logins_busy"

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
URL_RE = re.compile(r"https?://\S+/codex/device\S*")
CODE_RE = re.compile(r"^[A-Za-z0-9]{2,16}(?:-[A-Za-z0-9]{2,16}){0,3}$")
_REDACTIONS = (
    # JWTs (id/access tokens)
    (re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"), "[redacted-jwt]"),
    # key=value / "key": "value" pairs that name a secret
    (
        re.compile(
            r"(?i)((?:access|refresh|id)_token|code_verifier|authorization_code|api_key|"
            r"password|secret)(\"?\s*[:=]\s*\"?)[^\s\"&,]+"
        ),
        r"\1\2[redacted]",
    ),
    (re.compile(r"(?i)\bbearer\s+\S+"), "Bearer [redacted]"),
    # prefixed keys and refresh tokens (sk-..., rt_...)
    (re.compile(r"\b(?:sk|rt|sess)[-_][\w-]{8,}"), "[redacted-key]"),
    # any other long opaque run of token characters
    (re.compile(r"[A-Za-z0-9_\-+/=]{32,}"), "[redacted]"),
)


def strip_ansi(text: str) -> str:
    """Remove terminal colour and control sequences."""
    return ANSI_RE.sub("", text)


def redact(text: str) -> str:
    """Replace anything token-like (JWTs, keys, secrets in key=value form) with a marker."""
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


def login_argv(codex_bin: str, settings: Settings) -> list[str]:
    """Return the device-login command line (the issuer flag only with the test setting)."""
    argv = [codex_bin]
    for override in settings.codex_config_overrides:
        argv += ["-c", override]
    argv += ["login", "--device-auth"]
    if settings.testing_login_issuer:
        argv += ["--experimental_issuer", settings.testing_login_issuer]
    return argv


def helper_argv(codex_bin: str, settings: Settings, *command: str) -> list[str]:
    """Return a `codex -c ... <command>` line (login status, logout)."""
    argv = [codex_bin]
    for override in settings.codex_config_overrides:
        argv += ["-c", override]
    return [*argv, *command]


@dataclass
class DeviceFlow:
    """One user's device-login attempt and what the portal may show of it."""

    user_id: int
    username: str
    state: str = "starting"
    verification_url: str | None = None
    user_code: str | None = None
    started_at: float = field(default_factory=time.time)
    expires_at: float = 0.0
    finished_at: float | None = None
    error: str | None = None
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_LOG_LINES))
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if not self.expires_at:
            self.expires_at = self.started_at + DEVICE_CODE_TTL_S

    def finish(self, state: str, error: str | None = None) -> None:
        """Move to a terminal state once (the first terminal state wins)."""
        if self.state in TERMINAL_STATES:
            return
        self.state = state
        self.error = error
        self.finished_at = time.time()
        self.ready.set()

    def snapshot(self, linked: bool) -> dict[str, Any]:
        """Return the status body of this flow."""
        return {
            "state": self.state,
            "verificationUrl": self.verification_url,
            "userCode": self.user_code,
            "startedAt": self.started_at,
            "expiresAt": self.expires_at,
            "finishedAt": self.finished_at,
            "logs": list(self.logs),
            "linked": linked,
            "error": self.error,
        }


def ensure_home(home: Path) -> None:
    """Create a private CODEX_HOME (a quick local mkdir; fine on the loop)."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)


async def run_codex(
    argv: list[str], home: Path, timeout_s: float = HELPER_TIMEOUT_S
) -> tuple[int, str]:
    """Run a short codex command in `home`; return (exit code, ANSI-free combined output)."""
    ensure_home(home)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=child_env(home),
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        return 124, "timed out"
    finally:
        await terminate(proc, TERM_GRACE_S)
    return int(proc.returncode or 0), strip_ansi(out.decode("utf-8", "replace")).strip()


StopAccount = Callable[[str], Awaitable[Any] | Any]


class DeviceLogins:
    """Owns every user's device-login flow; created and closed by the app's cleanup context."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        codex_bin: str,
        stop_account: StopAccount | None = None,
        refusals: Counter[str] | None = None,
    ) -> None:
        self._refusals = refusals if refusals is not None else Counter()
        self._settings = settings
        self._store = store
        self._codex_bin = codex_bin
        self._stop_account = stop_account
        self._flows: dict[int, DeviceFlow] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # A cluster node tells from the database whether an account is linked, and stores a
        # login a flow of this node wrote (cluster/links.py); alone, the home's file counts.
        self.linked_check: Callable[[int], bool] | None = None
        self.on_linked: Callable[[int], Awaitable[None]] | None = None

    def _lock(self, user_id: int) -> asyncio.Lock:
        return self._locks.setdefault(user_id, asyncio.Lock())

    def home(self, user_id: int) -> Path:
        """Return the user's CODEX_HOME."""
        return linking.codex_home(self._settings, user_id)

    def status(self, user_id: int) -> dict[str, Any]:
        """Return the user's flow state; without a flow, `idle` or `linked` from disk."""
        if self.linked_check is not None:
            linked = self.linked_check(user_id)
        else:
            linked = linking.is_linked(self.home(user_id))
        flow = self._flows.get(user_id)
        if flow is None:
            return {
                "state": "linked" if linked else "idle",
                "verificationUrl": None,
                "userCode": None,
                "startedAt": None,
                "expiresAt": None,
                "finishedAt": None,
                "logs": [],
                "linked": linked,
                "error": None,
            }
        return flow.snapshot(linked)

    async def current(self, user_id: int) -> dict[str, Any]:
        """Return the user's flow status (the shared variant may ask the database)."""
        return self.status(user_id)

    async def start(self, user_id: int, username: str) -> dict[str, Any]:
        """Start a new flow (cancelling the user's old one) and wait briefly for link + code."""
        async with self._lock(user_id):
            await self._end(user_id, "cancelled")
            self._check_capacity()  # no await from here until the flow is registered
            flow = DeviceFlow(user_id, username)
            self._flows[user_id] = flow
            flow.task = asyncio.create_task(self._run(flow), name=f"device-login-{user_id}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(flow.ready.wait(), START_WAIT_S)
        return self.status(user_id)

    def running(self) -> list[DeviceFlow]:
        """Return the flows whose codex process may still run."""
        return [f for f in self._flows.values() if f.task is not None and not f.task.done()]

    def _check_capacity(self) -> None:
        """Raise a 429 when `maxDeviceLogins` flows already run (the caller's own was ended)."""
        running = self.running()
        limit = self._settings.max_device_logins
        if len(running) < limit:
            return
        self._refusals[LOGINS_BUSY] += 1
        # Flows end when linked or cancelled, or at the latest when their code expires.
        latest = max(1, int(min(f.expires_at for f in running) - time.time()) + 1)
        raise ApiError(
            429,
            f"The server already runs its maximum of {limit} device logins at once; retry "
            f"shortly (one ends within {latest} seconds at the latest).",
            LOGINS_BUSY,
            headers={"Retry-After": str(min(60, latest))},
        )

    async def cancel(self, user_id: int) -> dict[str, Any]:
        """Cancel the user's running flow (its process group is ended) and return the status."""
        async with self._lock(user_id):
            await self._end(user_id, "cancelled")
        return self.status(user_id)

    async def forget(self, user_id: int) -> None:
        """End and drop the user's flow (unlink, deletion)."""
        async with self._lock(user_id):
            await self._end(user_id, "cancelled")
            self._flows.pop(user_id, None)

    async def close(self) -> None:
        """Cancel every flow (shutdown)."""
        for user_id in list(self._flows):
            await self.forget(user_id)

    async def _end(self, user_id: int, state: str) -> None:
        flow = self._flows.get(user_id)
        if flow is None or flow.task is None or flow.task.done():
            return
        flow.finish(state)
        flow.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flow.task

    async def unlink(self, user_id: int) -> bool:
        """Log the account out, stop its app-server, remove auth.json; tell if it was linked."""
        await self.forget(user_id)
        home = self.home(user_id)
        was_linked = linking.is_linked(home)
        if self._codex_bin and home.is_dir():
            try:
                code, out = await run_codex(
                    helper_argv(self._codex_bin, self._settings, "logout"), home
                )
                _LOGGER.info("codex logout for user %s exited %s", user_id, code)
            except OSError as exc:
                _LOGGER.warning("codex logout for user %s failed: %s", user_id, exc)
        await self.stop_account(user_id)
        (home / "auth.json").unlink(missing_ok=True)
        linking.forget(home)
        return was_linked

    async def stop_account(self, user_id: int) -> None:
        """Stop the account's warm app-server (it holds the old login); never raises."""
        if self._stop_account is None:
            return
        try:
            result = self._stop_account(str(user_id))
            if inspect.isawaitable(result):
                await result
        except Exception:
            _LOGGER.exception("Could not stop the app-server of account %s", user_id)

    # --- the flow itself ---------------------------------------------------------------------

    async def _run(self, flow: DeviceFlow) -> None:
        """Drive one flow to a terminal state; always ends the child's process group."""
        home = self.home(flow.user_id)
        if not self._codex_bin:
            flow.finish(
                "failed",
                "The codex CLI is not installed on the server (run install.sh or set codexBin).",
            )
            return
        try:
            ensure_home(home)
            flow.proc = await asyncio.create_subprocess_exec(
                *login_argv(self._codex_bin, self._settings),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(home),
                start_new_session=True,
            )
        except OSError as exc:
            flow.finish("failed", f"Could not start the codex CLI: {exc.strerror or exc}")
            return
        await audit.record(self._store, f"user:{flow.username}", "device.start", flow.username)
        proc = flow.proc
        assert proc.stdout is not None and proc.stderr is not None
        pumps = asyncio.gather(self._pump(proc.stdout, flow), self._pump(proc.stderr, flow))
        try:
            deadline = flow.expires_at + 30 - time.time()
            try:
                await asyncio.wait_for(asyncio.shield(pumps), max(1.0, deadline))
                code = await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                flow.finish("expired", "The device code expired (15 minutes); start again.")
                return
            await self._conclude(flow, code, home)
        finally:
            await terminate(proc, TERM_GRACE_S)
            pumps.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumps

    async def _conclude(self, flow: DeviceFlow, code: int, home: Path) -> None:
        if code != 0:
            last = flow.logs[-1] if flow.logs else f"codex exited with code {code}"
            if "timed out" in last.lower():
                flow.finish("expired", "The device code expired (15 minutes); start again.")
            else:
                flow.finish("failed", last)
            await audit.record(
                self._store, f"user:{flow.username}", "device.failed", flow.username, flow.state
            )
            return
        status_code, out = await run_codex(
            helper_argv(self._codex_bin, self._settings, "login", "status"), home
        )
        if status_code == 0 and linking.is_linked(home):
            await self.stop_account(flow.user_id)  # a warm app-server must pick up the new login
            if self.on_linked is not None:
                await self.on_linked(flow.user_id)
            flow.finish("linked")
            await audit.record(self._store, f"user:{flow.username}", "device.linked", flow.username)
        else:
            flow.finish("failed", redact(out.splitlines()[-1] if out else "login not confirmed"))
            await audit.record(
                self._store, f"user:{flow.username}", "device.failed", flow.username, "status"
            )

    async def _pump(self, stream: asyncio.StreamReader, flow: DeviceFlow) -> None:
        """Read one output stream line by line into the flow's log and parsed fields."""
        expect_code = False
        while True:
            try:
                raw = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # an absurdly long line: skip it, keep reading
            if not raw:
                return
            line = strip_ansi(raw.decode("utf-8", "replace")).strip()[:MAX_LINE_CHARS]
            if not line:
                continue
            match = URL_RE.search(line)
            if match and flow.verification_url is None:
                flow.verification_url = match.group(0)
            if expect_code and CODE_RE.fullmatch(line) and flow.user_code is None:
                flow.user_code = line
            expect_code = "one-time code" in line.lower()
            safe = redact(line)
            flow.logs.append(safe)
            _LOGGER.debug("device login %s: %s", flow.user_id, safe)
            if flow.state == "starting" and flow.verification_url and flow.user_code:
                flow.state = "awaiting_user"
                flow.ready.set()
