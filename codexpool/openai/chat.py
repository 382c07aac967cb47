"""Chat completions: the engine's request built from a chat request, and the answer written
as `chat.completion.chunk` events or one `chat.completion` (driver.py runs the turn)."""

from __future__ import annotations

from typing import Any

from ..codex.engine import TurnRequest
from ..codex.events import ToolCalls
from ..errors import ApiError, error_body
from . import sse
from .driver import TurnOutcome
from .translate import ChatRequest, ChunkFactory, completion, tool_call_objects


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
        web_search=req.tool_plan.web_search,
    )


class ChatWriter:
    """Writes an answer as chat completions: `chat.completion.chunk` events, or one
    `chat.completion` (the driver.AnswerWriter of /v1/chat/completions)."""

    response_id: str | None = None  # chat answers are not continued by id

    def __init__(self, req: ChatRequest) -> None:
        self._req = req
        self._chunks = ChunkFactory(req.raw_model)

    def headers(self) -> dict[str, str]:
        """Return no headers of its own."""
        return {}

    def open(self) -> bytes:
        """Return the role chunk that opens every answer."""
        return sse.encode(self._chunks.role())

    def text(self, delta: str) -> bytes:
        """Return a content chunk (the hot path: see ChunkFactory.content_event)."""
        return self._chunks.content_event(delta)

    def reasoning(self, delta: str, summary_index: int = 0) -> bytes:
        """Return a `reasoning_content` chunk."""
        return sse.encode(self._chunks.reasoning(delta))

    def tool_calls(self, calls: ToolCalls) -> bytes:
        """Return the chunks the SDKs assemble into `tool_calls`."""
        chunks = self._chunks.tool_call_chunks(tool_call_objects(calls.calls))
        return b"".join(sse.encode(c) for c in chunks)

    def error(self, err: ApiError) -> bytes:
        """Return the error event the SDKs raise (with its provenance), then [DONE]."""
        body = error_body(err.message, err.type, err.code, None, err.source)
        return sse.encode(body) + sse.DONE

    def finish(self, outcome: TurnOutcome) -> bytes:
        """Return the finish_reason chunk, the usage chunk when asked for, then [DONE].

        After tool calls the usage is zeros: codex counts the step once the results are in.
        """
        reason = "tool_calls" if outcome.tool_calls is not None else "stop"
        out = [sse.encode(self._chunks.finish(reason))]
        if self._req.include_usage:
            out.append(sse.encode(self._chunks.usage(outcome.usage_dict())))
        out.append(sse.DONE)
        return b"".join(out)

    def body(self, outcome: TurnOutcome) -> dict[str, Any]:
        """Return the whole `chat.completion` object."""
        calls = outcome.tool_calls
        return completion(
            self._req.raw_model,
            "".join(outcome.text),
            outcome.usage_dict(),
            "".join(outcome.reasoning),
            tool_calls=tool_call_objects(calls.calls) if calls else None,
        )
