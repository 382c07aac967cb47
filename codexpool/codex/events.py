"""Typed events of a Codex turn and the failures it can end with.

The app-server speaks camelCase JSON-RPC; everything above the engine sees only these types,
so error mapping (usage limit, lost login, upstream outage) happens in exactly one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class TextDelta:
    """A piece of the assistant's answer."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning summary, in its part `summary_index`."""

    text: str
    summary_index: int = 0


@dataclass(frozen=True)
class Usage:
    """Token counts of the turn."""

    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int

    def minus(self, earlier: Usage) -> Usage:
        """Return what was used since `earlier` (codex reports a thread's running total)."""
        return Usage(
            max(0, self.input_tokens - earlier.input_tokens),
            max(0, self.cached_input_tokens - earlier.cached_input_tokens),
            max(0, self.output_tokens - earlier.output_tokens),
            max(0, self.reasoning_tokens - earlier.reasoning_tokens),
        )


@dataclass(frozen=True)
class RateLimitWindow:
    """One Codex limit window (5-hour primary or weekly secondary)."""

    used_percent: float
    window_mins: int | None
    resets_at: int | None


@dataclass(frozen=True)
class RateLimitSnapshot:
    """An account's Codex limits as read or pushed by the app-server."""

    primary: RateLimitWindow | None
    secondary: RateLimitWindow | None
    plan_type: str | None = None

    def merged_over(self, older: RateLimitSnapshot | None) -> RateLimitSnapshot:
        """Return this (possibly sparse) update with gaps filled from an older snapshot."""
        if older is None:
            return self
        return RateLimitSnapshot(
            self.primary or older.primary,
            self.secondary or older.secondary,
            self.plan_type or older.plan_type,
        )


@dataclass(frozen=True)
class RateLimitUpdate:
    """Fresh limits pushed during a turn."""

    snapshot: RateLimitSnapshot


@dataclass(frozen=True, eq=False)
class ToolCall:
    """The model called one of the client's functions; `reply` resolves the app-server's
    pending `item/tool/call` request with the client's result."""

    call_id: str
    name: str
    arguments: str  # JSON text, as OpenAI clients expect
    reply: Any  # asyncio.Future[dict]: the DynamicToolCallResponse to send back


@dataclass(frozen=True)
class ToolCalls:
    """Every function call the model made in one step (parallel calls arrive together)."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class Heartbeat:
    """Nothing happened for a while; lets a streaming client send a keep-alive."""


@dataclass(frozen=True)
class CaughtUp:
    """Every event that has arrived so far was yielded; the next one must be waited for.

    A streaming consumer buffers what it encodes and writes it out here, so deltas that arrive
    together (a fast model, or a loop that fell behind under load) leave in one write instead
    of one each, and nothing ever waits in the buffer for an event that has not come yet.
    """


@dataclass(frozen=True)
class TurnDone:
    """The turn finished normally."""

    status: str


Event = (
    TextDelta
    | ReasoningDelta
    | Usage
    | RateLimitUpdate
    | ToolCalls
    | Heartbeat
    | CaughtUp
    | TurnDone
)

# Why a turn failed, in terms a caller acts on (fail over, retry, which 4xx/5xx to answer).
TurnErrorKind = Literal[
    "usage_limit",
    "unauthorized",
    "upstream",
    "timeout",
    "interrupted",
    "busy",
    "not_linked",
    "crashed",
    "bad_request",
    "shutdown",
    "slow_client",
]


class TurnError(Exception):
    """A turn failed; `kind` says why in a way callers can act on (fail over, retry, 4xx)."""

    def __init__(
        self,
        kind: TurnErrorKind,
        message: str,
        *,
        resets_at: int | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.resets_at = resets_at
        self.http_status = http_status

    @property
    def retryable(self) -> bool:
        """Tell whether another account (or a later try) might succeed."""
        return self.kind in ("usage_limit", "unauthorized", "upstream", "crashed", "busy")

    def __repr__(self) -> str:
        return f"TurnError({self.kind!r}, {self.message!r})"


def parse_window(raw: Any) -> RateLimitWindow | None:
    """Parse an app-server `RateLimitWindow` ({usedPercent, windowDurationMins, resetsAt})."""
    if not isinstance(raw, dict) or raw.get("usedPercent") is None:
        return None
    try:
        used = float(raw["usedPercent"])
    except (TypeError, ValueError):
        return None
    mins = raw.get("windowDurationMins")
    resets = raw.get("resetsAt")
    return RateLimitWindow(
        used,
        int(mins) if isinstance(mins, int | float) else None,
        int(resets) if isinstance(resets, int | float) else None,
    )


def parse_rate_limits(raw: Any) -> RateLimitSnapshot | None:
    """Parse a `RateLimitSnapshot`, or the `rateLimits` member of a read result."""
    if isinstance(raw, dict) and isinstance(raw.get("rateLimits"), dict):
        raw = raw["rateLimits"]
    if not isinstance(raw, dict):
        return None
    primary, secondary = parse_window(raw.get("primary")), parse_window(raw.get("secondary"))
    if primary is None and secondary is None:
        return None
    plan = raw.get("planType")
    return RateLimitSnapshot(primary, secondary, plan if isinstance(plan, str) else None)


_STRING_KINDS: dict[str, TurnErrorKind] = {
    "usageLimitExceeded": "usage_limit",
    "sessionBudgetExceeded": "usage_limit",
    "unauthorized": "unauthorized",
    "rateLimitExceeded": "upstream",
    "serverOverloaded": "upstream",
    "internalServerError": "upstream",
    "modelNotFound": "bad_request",
    "badRequest": "bad_request",
    "contextWindowExceeded": "bad_request",
}


def error_from_turn(error: Any, fallback: str = "The Codex turn failed.") -> TurnError:
    """Map an app-server `TurnError` object ({message, codexErrorInfo}) to a TurnError."""
    if not isinstance(error, dict):
        return TurnError("upstream", fallback)
    message = str(error.get("message") or fallback)
    info = error.get("codexErrorInfo")
    status: int | None = None
    kind: TurnErrorKind = "upstream"
    if isinstance(info, str):
        kind = _STRING_KINDS.get(info, "upstream")
    elif isinstance(info, dict) and info:
        detail = next(iter(info.values()))
        if isinstance(detail, dict) and isinstance(detail.get("httpStatusCode"), int):
            status = detail["httpStatusCode"]
        if status == 401:
            kind = "unauthorized"
        elif status == 429 and "usage limit" in message.lower():
            kind = "usage_limit"
    if kind == "upstream" and "usage limit" in message.lower():
        kind = "usage_limit"
    return TurnError(kind, message, http_status=status)


def parse_exec_event(line: str | bytes) -> dict[str, Any] | None:
    """Parse one `codex exec --json` line; None for blank or non-JSON lines."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("type"), str) else None
