"""The Responses API (`POST /v1/responses`) on top of the chat machinery.

A Responses body is translated into the equivalent chat body (instructions -> system message,
input items -> messages, `function_call_output` items -> tool messages, function tools ->
chat tools), so validation, pool selection, failover, tool-call parking and usage rows are the
chat path's own. Only the output is shaped differently: a `response` object, or the
`response.*` event stream.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from ..codex.events import CaughtUp, Heartbeat, TextDelta, ToolCalls, TurnError
from ..errors import ApiError, error_body
from . import sse
from .chat import TurnOutcome, _take, turn_error_to_api
from .tool_names import unalias
from .translate import ChatRequest, require_codex_json

_ROLE_OK = ("user", "assistant", "system", "developer")


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, "invalid_request", param=param)


def _item_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    """Return a message item's content as chat content: text parts, and image parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("`content` must be a string or a list of parts", param)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise _bad("an input_image part needs an `image_url` string", f"{param}[{j}]")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise _bad("only text and input_image content parts are supported", f"{param}[{j}]")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def to_chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """Translate a Responses request body into a chat completions body."""
    messages: list[dict[str, Any]] = []
    if body.get("instructions") is not None:
        if not isinstance(body["instructions"], str):
            raise _bad("`instructions` must be a string", "instructions")
        messages.append({"role": "system", "content": body["instructions"]})
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise _bad("each input item must be an object", f"input[{i}]")
            kind = item.get("type", "message")
            if kind == "message":
                role = item.get("role")
                if role not in _ROLE_OK:
                    raise _bad(f"role must be one of {', '.join(_ROLE_OK)}", f"input[{i}].role")
                messages.append(
                    {
                        "role": role,
                        "content": _item_content(item.get("content"), f"input[{i}].content"),
                    }
                )
            elif kind == "function_call":
                messages.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": item.get("call_id"),
                                "type": "function",
                                "function": {
                                    "name": item.get("name"),
                                    "arguments": item.get("arguments", "{}"),
                                },
                            }
                        ],
                    }
                )
            elif kind == "function_call_output":
                output = item.get("output")
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": item.get("call_id"),
                        "content": output if isinstance(output, str) else str(output),
                    }
                )
            else:
                raise _bad(f"input item type {kind!r} is not supported", f"input[{i}].type")
    else:
        raise _bad("`input` must be a string or an array of items", "input")
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": messages,
        "stream": body.get("stream", False),
    }
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("`tools` must be an array", "tools")
        chat["tools"] = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                raise _bad("only function tools are supported", f"tools[{i}]")
            chat["tools"].append(
                {
                    "type": "function",
                    "function": {
                        k: tool[k] for k in ("name", "description", "parameters") if k in tool
                    },
                }
            )
    for name in ("tool_choice", "reasoning", "timeoutMs"):
        if name in body:
            chat[name] = body[name]
    if isinstance(body.get("tool_choice"), dict) and "name" in body["tool_choice"]:
        chat["tool_choice"] = {
            "type": "function",
            "function": {"name": body["tool_choice"]["name"]},
        }
    if body.get("max_output_tokens") is not None:
        chat["max_output_tokens"] = body["max_output_tokens"]
    response_format = text_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def text_format(text: Any) -> dict[str, Any] | None:
    """Return chat's `response_format` for a Responses `text` object (its `format`).

    The Responses API flattens the schema into the format (`{type: "json_schema", name,
    schema, strict}`) where chat nests it under `json_schema`; both then reach Codex as the
    turn's output schema. `verbosity` and other members are ignored.
    """
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _bad("`text` must be an object", "text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        raise _bad("`text.format` must be an object with a `type`", "text.format")
    kind = fmt["type"]
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema":
        raise _bad(
            f"text.format type {kind!r} is not supported (text, json_object, json_schema)",
            "text.format.type",
        )
    if not isinstance(fmt.get("schema"), dict):
        raise _bad("`text.format.schema` must be a JSON schema object", "text.format.schema")
    require_codex_json(fmt["schema"], "text.format.schema")
    spec = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
    return {"type": "json_schema", "json_schema": spec}


class ResponseBuilder:
    """Builds the `response` object and its stream events for one answer."""

    def __init__(self, model: str) -> None:
        self.id = "resp_" + uuid.uuid4().hex[:24]
        self.msg_id = "msg_" + uuid.uuid4().hex[:24]
        self.model = model
        self.created_at = int(time.time())
        self.seq = 0

    def event(self, kind: str, **fields: Any) -> bytes:
        """Encode one Responses stream event."""
        self.seq += 1
        return sse.encode({"type": kind, "sequence_number": self.seq, **fields}, event=kind)

    def message_item(self, text: str, status: str = "completed") -> dict[str, Any]:
        """Return the assistant message output item."""
        return {
            "type": "message",
            "id": self.msg_id,
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }

    def response(
        self, status: str, outcome: TurnOutcome | None, output: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Return the `response` object."""
        usage = None
        if outcome is not None and outcome.usage is not None:
            u = outcome.usage
            usage = {
                "input_tokens": u.input_tokens,
                "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
                "output_tokens": u.output_tokens,
                "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                "total_tokens": u.input_tokens + u.output_tokens,
            }
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "usage": usage,
        }

    def output(self, outcome: TurnOutcome) -> list[dict[str, Any]]:
        """Return the output items: function calls when the model called tools, else text."""
        items: list[dict[str, Any]] = []
        if outcome.text:
            items.append(self.message_item("".join(outcome.text)))
        if outcome.tool_calls is not None:
            for call in outcome.tool_calls.calls:
                items.append(
                    {
                        "type": "function_call",
                        "id": "fc_" + call.call_id,
                        "call_id": call.call_id,
                        "name": unalias(call.name),  # the client's own name
                        "arguments": call.arguments,
                        "status": "completed",
                    }
                )
        return items


async def complete(events: Any, req: ChatRequest) -> tuple[dict[str, Any], TurnOutcome]:
    """Run a turn and return one `response` object."""
    outcome = TurnOutcome()
    try:
        async for event in events:
            if isinstance(event, ToolCalls):
                outcome.tool_calls = event
                break
            _take(event, outcome)
    except TurnError as exc:
        outcome.error = turn_error_to_api(exc)
        outcome.status = outcome.error.status
        raise outcome.error from exc
    builder = ResponseBuilder(req.raw_model)
    outcome.response_id = builder.id
    return builder.response("completed", outcome, builder.output(outcome)), outcome


async def stream(
    request: web.Request, events: Any, req: ChatRequest, outcome: TurnOutcome
) -> web.StreamResponse:
    """Stream a turn as Responses events; headers go out with the first upstream event.

    As in chat.stream, encoded events wait in `pending` until the engine has nothing more
    queued (CaughtUp), so what arrived together leaves in one write.
    """
    b = ResponseBuilder(req.raw_model)
    outcome.response_id = b.id
    resp: web.StreamResponse | None = None
    pending: list[bytes] = []
    started_text = False

    async def open_() -> web.StreamResponse:
        pending.append(b.event("response.created", response=b.response("in_progress", None, [])))
        return await sse.open_stream(request)

    try:
        async for event in events:
            if isinstance(event, CaughtUp | Heartbeat):
                resp = await sse.flush(resp, pending, open_, ping=isinstance(event, Heartbeat))
                continue
            if resp is None:
                resp = await open_()
            if isinstance(event, ToolCalls):
                outcome.tool_calls = event
                break
            _take(event, outcome)
            if isinstance(event, TextDelta) and event.text:
                if not started_text:
                    started_text = True
                    item = b.message_item("", "in_progress")
                    item["content"] = []
                    pending.append(b.event("response.output_item.added", output_index=0, item=item))
                    pending.append(
                        b.event(
                            "response.content_part.added",
                            item_id=b.msg_id,
                            output_index=0,
                            content_index=0,
                            part={"type": "output_text", "text": "", "annotations": []},
                        )
                    )
                pending.append(
                    b.event(
                        "response.output_text.delta",
                        item_id=b.msg_id,
                        output_index=0,
                        content_index=0,
                        delta=event.text,
                    )
                )
    except TurnError as exc:
        err = turn_error_to_api(exc)
        outcome.error, outcome.status = err, err.status
        if resp is None:
            raise err from exc
        pending.append(b.event("error", **error_body(err.message, err.type, err.code)["error"]))
        await resp.write_eof(b"".join(pending))
        return resp
    if resp is None:
        resp = await open_()
    items = b.output(outcome)
    for index, item in enumerate(items):
        if item["type"] == "function_call":
            pending += _function_call_events(b, index, item)
            continue
        if started_text:
            done = {"item_id": b.msg_id, "output_index": index, "content_index": 0}
            part = item["content"][0]
            pending.append(b.event("response.output_text.done", **done, text=part["text"]))
            pending.append(b.event("response.content_part.done", **done, part=part))
        pending.append(b.event("response.output_item.done", output_index=index, item=item))
    pending.append(b.event("response.completed", response=b.response("completed", outcome, items)))
    await resp.write_eof(b"".join(pending))
    return resp


def _function_call_events(b: ResponseBuilder, index: int, item: dict[str, Any]) -> list[bytes]:
    """Return a function call's events as OpenAI streams them: the item added (arguments
    empty), its arguments as one delta, the arguments done, the item done.

    Codex hands over a call only once its arguments are complete, so they go in one delta;
    clients that assemble calls from the deltas (LangChain) and the SDKs' stream helpers,
    which need the item added before its deltas, see the full sequence all the same.
    """
    ref = {"item_id": item["id"], "output_index": index}
    return [
        b.event(
            "response.output_item.added",
            output_index=index,
            item={**item, "arguments": "", "status": "in_progress"},
        ),
        b.event("response.function_call_arguments.delta", **ref, delta=item["arguments"]),
        b.event(
            "response.function_call_arguments.done",
            **ref,
            name=item["name"],
            arguments=item["arguments"],
        ),
        b.event("response.output_item.done", output_index=index, item=item),
    ]
