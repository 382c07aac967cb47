"""One driver for every answer shape: it runs a turn's events into an `AnswerWriter`.

Chat completions and the Responses API answer the same Codex turn in two shapes (chunks vs
`response.*` events). The driver owns what they share, so it cannot drift between them: when
headers go out, buffering, keep-alives, the usage of the turn, tool-call parking and the error
mapping with its provenance (`source`). A writer only encodes: each method returns the bytes of
one step of its shape and does no I/O, so a new kind of event is one method on each writer.

Streaming answers send their headers only when the first upstream event arrives, so an error
before any output still gets a real HTTP status (and the pool can fail over) instead of a 200
stream that carries an error; a turn still silent after the keep-alive interval opens its
stream then, so that idle timeouts of proxies do not cut it (sse.flush). A failure after the
headers ends the stream with the writer's error event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from ..codex.events import (
    CaughtUp,
    Heartbeat,
    ReasoningDelta,
    TextDelta,
    ToolCalls,
    TurnError,
    TurnErrorKind,
    Usage,
)
from ..errors import ApiError, Source
from . import sse
from .translate import usage_dict

# TurnError.kind -> (HTTP status, error code, who produced it)
_ERROR_MAP: dict[TurnErrorKind, tuple[int, str, Source]] = {
    "usage_limit": (429, "usage_limit_reached", "upstream"),
    "unauthorized": (502, "account_unauthorized", "upstream"),
    "not_linked": (403, "account_not_linked", "gateway"),
    "upstream": (502, "upstream_error", "upstream"),
    "timeout": (504, "timeout", "gateway"),
    "busy": (429, "account_busy", "gateway"),
    "crashed": (502, "codex_crashed", "gateway"),
    "bad_request": (400, "upstream_bad_request", "upstream"),
    "interrupted": (499, "interrupted", "gateway"),
    "shutdown": (503, "server_shutting_down", "gateway"),
    "slow_client": (408, "stream_stalled", "gateway"),
}


def turn_error_to_api(exc: TurnError) -> ApiError:
    """Map a typed turn failure to the HTTP error a client sees."""
    status, code, source = _ERROR_MAP.get(exc.kind, (502, "upstream_error", "upstream"))
    headers: dict[str, str] = {}
    message = exc.message or code
    if exc.kind == "usage_limit" and exc.resets_at:
        wait = max(1, int(exc.resets_at - time.time()))
        headers["Retry-After"] = str(wait)
        message = f"{message} (the account's Codex limit resets at unix time {exc.resets_at})"
    elif exc.kind == "busy":
        headers["Retry-After"] = "1"
    return ApiError(status, message, code, source=source, headers=headers)


@dataclass
class TurnOutcome:
    """What one turn produced, for the usage row, the answer and the conversation."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    reasoning_parts: list[int] = field(default_factory=list)  # each piece's summaryIndex
    usage: Usage | None = None
    first_token_at: float | None = None
    error: ApiError | None = None
    status: int = 200
    # Set when the model called client functions: the turn is parked, not finished.
    tool_calls: ToolCalls | None = None
    response_id: str | None = None  # the Responses API answer's id (previous_response_id)

    def usage_dict(self) -> dict[str, Any]:
        """Return OpenAI usage (zeros when Codex reported none)."""
        u = self.usage
        if u is None:
            return usage_dict(0, 0, 0, 0)
        return usage_dict(
            u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens
        )

    def take(self, event: object) -> None:
        """Keep what an event adds to the answer (text, reasoning, usage)."""
        if isinstance(event, TextDelta):
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
            self.text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
            self.reasoning_parts.append(event.summary_index)
        elif isinstance(event, Usage):
            self.usage = event


class AnswerWriter(Protocol):
    """Encodes one answer in a client-facing shape (chat.ChatWriter, responses.ResponsesWriter).

    The stream methods return the encoded events of one step (b"" when the shape has nothing
    to say about it); the driver buffers and writes them. `text` and `reasoning` get non-empty
    deltas only. After `tool_calls` comes `finish`: the turn is parked for the results.
    """

    response_id: str | None  # the answer's id when its shape can continue from it

    def headers(self) -> dict[str, str]:
        """Return response headers of the shape's own (streamed or whole answers alike)."""
        ...

    def open(self) -> bytes:
        """Return the events that open the stream (queued as its headers go out)."""
        ...

    def text(self, delta: str) -> bytes:
        """Return the events of a piece of the answer's text."""
        ...

    def reasoning(self, delta: str, summary_index: int = 0) -> bytes:
        """Return the events of a piece of the reasoning summary (in its part
        `summary_index`)."""
        ...

    def tool_calls(self, calls: ToolCalls) -> bytes:
        """Return the events of the client functions the model called."""
        ...

    def error(self, err: ApiError) -> bytes:
        """Return the events that end a stream failing after its headers went out."""
        ...

    def finish(self, outcome: TurnOutcome) -> bytes:
        """Return the events that close a stream that ran to its end (or to tool calls)."""
        ...

    def body(self, outcome: TurnOutcome) -> dict[str, Any]:
        """Return the whole answer of a request that did not ask for a stream."""
        ...


async def complete(
    events: AsyncIterator[object], writer: AnswerWriter, outcome: TurnOutcome
) -> dict[str, Any]:
    """Run a turn to its end (or its tool calls) and return the writer's whole answer.

    Raises the turn's failure as an ApiError (caused by the TurnError), with `outcome`
    recording it.
    """
    outcome.response_id = writer.response_id
    try:
        async for event in events:
            if isinstance(event, ToolCalls):
                outcome.tool_calls = event  # stop here: the caller parks the turn
                break
            outcome.take(event)
    except TurnError as exc:
        outcome.error = turn_error_to_api(exc)
        outcome.status = outcome.error.status
        raise outcome.error from exc
    return writer.body(outcome)


async def stream(
    request: web.Request,
    events: AsyncIterator[object],
    writer: AnswerWriter,
    outcome: TurnOutcome,
) -> web.StreamResponse:
    """Stream a turn through `writer`; headers go out with the first upstream event.

    Raises the turn's failure as an ApiError only while nothing reached the client (the
    caller may then fail over); later failures end the stream with `writer.error`.

    Writes are coalesced where it costs the client nothing: encoded events are buffered until
    the engine says it has caught up with Codex (CaughtUp), so the opening event leaves with
    the first answer event, deltas that arrived together leave together, and the closing
    events leave with the end of the body (fewer system calls and TCP segments per answer,
    most of all when the loop is busy).
    """
    outcome.response_id = writer.response_id
    resp: web.StreamResponse | None = None
    pending: list[bytes] = []  # encoded, not yet written: goes out at CaughtUp or the end

    async def open_() -> web.StreamResponse:
        pending.append(writer.open())
        return await sse.open_stream(request, writer.headers())

    try:
        async for event in events:
            if isinstance(event, CaughtUp | Heartbeat):
                resp = await sse.flush(resp, pending, open_, ping=isinstance(event, Heartbeat))
                continue
            if resp is None:
                resp = await open_()
            if isinstance(event, ToolCalls):
                outcome.tool_calls = event  # the caller parks the turn for the tool results
                pending.append(writer.tool_calls(event))
                break
            outcome.take(event)
            if isinstance(event, TextDelta):
                if event.text:
                    pending.append(writer.text(event.text))
            elif isinstance(event, ReasoningDelta):
                if event.text:
                    pending.append(writer.reasoning(event.text, event.summary_index))
            # Usage is kept in the outcome; RateLimitUpdate went to the engine's hook.
    except TurnError as exc:
        err = turn_error_to_api(exc)
        outcome.error, outcome.status = err, err.status
        if resp is None:
            raise err from exc
        # Headers are gone: end the stream with an error event the SDKs raise.
        pending.append(writer.error(err))
        await resp.write_eof(b"".join(pending))
        return resp
    if resp is None:
        resp = await open_()
    pending.append(writer.finish(outcome))
    await resp.write_eof(b"".join(pending))
    return resp
