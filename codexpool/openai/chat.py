"""One chat completion: run a Codex turn on an account and answer in OpenAI's shape.

Streaming answers send their headers only when the first upstream event arrives, so an error
before any output still gets a real HTTP status (and the pool can fail over) instead of a 200
stream that carries an error; a turn still silent after the keep-alive interval opens its
stream then, so that idle timeouts of proxies do not cut it (sse.flush).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..codex.engine import TurnRequest
from ..codex.events import (
    CaughtUp,
    Heartbeat,
    RateLimitUpdate,
    ReasoningDelta,
    TextDelta,
    ToolCalls,
    TurnError,
    TurnErrorKind,
    Usage,
)
from ..errors import ApiError, Source, error_body
from . import sse
from .translate import ChatRequest, ChunkFactory, completion, tool_call_objects, usage_dict

_LOGGER = logging.getLogger(__name__)

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
    """What one turn produced, for the usage row and the non-streamed answer."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
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


def turn_request(
    req: ChatRequest, timeout_cap_ms: int, history: tuple[dict[str, Any], ...] = ()
) -> TurnRequest:
    """Build the engine's request from a validated chat request (and the items before it)."""
    timeout_ms = min(req.timeout_ms or timeout_cap_ms, timeout_cap_ms)
    return TurnRequest(
        prompt=req.prompt,
        developer_instructions=req.developer_instructions,
        model=req.model or None,
        effort=req.effort,
        timeout_s=timeout_ms / 1000,
        output_schema=req.output_schema,
        tools=req.tools,
        images=req.images,
        history=history,
    )


def _take(event: object, outcome: TurnOutcome) -> None:
    if isinstance(event, TextDelta):
        if outcome.first_token_at is None:
            outcome.first_token_at = time.monotonic()
        outcome.text.append(event.text)
    elif isinstance(event, ReasoningDelta):
        outcome.reasoning.append(event.text)
    elif isinstance(event, Usage):
        outcome.usage = event


async def complete(
    events: AsyncIterator[object], req: ChatRequest
) -> tuple[dict[str, Any], TurnOutcome]:
    """Run a turn to the end and return one `chat.completion` object."""
    outcome = TurnOutcome()
    try:
        async for event in events:
            if isinstance(event, ToolCalls):
                outcome.tool_calls = event  # stop here: the caller parks the turn
                break
            _take(event, outcome)
    except TurnError as exc:
        outcome.error = turn_error_to_api(exc)
        outcome.status = outcome.error.status
        raise outcome.error from exc
    body = completion(
        req.raw_model,
        "".join(outcome.text),
        outcome.usage_dict(),
        "".join(outcome.reasoning),
        tool_calls=tool_call_objects(outcome.tool_calls.calls) if outcome.tool_calls else None,
    )
    return body, outcome


async def stream(
    request: web.Request, events: AsyncIterator[object], req: ChatRequest, outcome: TurnOutcome
) -> web.StreamResponse:
    """Stream a turn as chat chunks; headers go out with the first upstream event.

    Writes are coalesced where it costs the client nothing: encoded chunks are buffered until
    the engine says it has caught up with Codex (CaughtUp), so the role chunk leaves with the
    first answer chunk, deltas that arrived together leave together, and the closing chunks
    leave with the end of the body (fewer system calls and TCP segments per answer, most of
    all when the loop is busy).
    """
    chunks = ChunkFactory(req.raw_model)
    resp: web.StreamResponse | None = None
    pending: list[bytes] = []  # encoded, not yet written: goes out at CaughtUp or the end

    async def open_() -> web.StreamResponse:
        pending.append(sse.encode(chunks.role()))
        return await sse.open_stream(request)

    try:
        async for event in events:
            if isinstance(event, CaughtUp | Heartbeat):
                resp = await sse.flush(resp, pending, open_, ping=isinstance(event, Heartbeat))
                continue
            if resp is None:
                resp = await open_()
            if isinstance(event, ToolCalls):
                outcome.tool_calls = event  # the caller parks the turn for the tool results
                pending += [
                    sse.encode(c) for c in chunks.tool_call_chunks(tool_call_objects(event.calls))
                ]
                pending.append(sse.encode(chunks.finish("tool_calls")))
                if req.include_usage:  # zeros: codex counts the step once the results are in
                    pending.append(sse.encode(chunks.usage(outcome.usage_dict())))
                pending.append(sse.DONE)
                await resp.write_eof(b"".join(pending))
                return resp
            _take(event, outcome)
            if isinstance(event, TextDelta) and event.text:
                pending.append(chunks.content_event(event.text))
            elif isinstance(event, ReasoningDelta) and event.text:
                pending.append(sse.encode(chunks.reasoning(event.text)))
            elif isinstance(event, RateLimitUpdate):
                pass  # consumed by the engine's hook; nothing for the client
    except TurnError as exc:
        err = turn_error_to_api(exc)
        outcome.error, outcome.status = err, err.status
        if resp is None:
            raise err from exc
        # Headers are gone: end the stream with an error event the SDKs raise, then [DONE].
        body = error_body(err.message, err.type, err.code, None, err.source)
        await resp.write_eof(b"".join([*pending, sse.encode(body), sse.DONE]))
        return resp
    if resp is None:
        resp = await open_()
    pending.append(sse.encode(chunks.finish("stop")))
    if req.include_usage:
        pending.append(sse.encode(chunks.usage(outcome.usage_dict())))
    pending.append(sse.DONE)
    await resp.write_eof(b"".join(pending))
    return resp
