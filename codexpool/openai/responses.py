"""The Responses API (`POST /v1/responses`) on top of the chat machinery.

A Responses body is translated into the equivalent chat body (instructions -> system message,
input items -> messages, `function_call_output` items -> tool messages, function tools ->
chat tools), so validation, pool selection, failover, tool-call parking and usage rows are the
chat path's own. Only the output is shaped differently: a `response` object, or the
`response.*` event stream (responses_writer.py).
"""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..validate import decode
from .bodies import ResponsesBody
from .input_files import file_part_text
from .responses_writer import ECHO_DEFAULTS
from .tool_kinds import ToolPlan, custom_arguments, output_text, plan_tools
from .translate import require_codex_json

_ROLE_OK = ("user", "assistant", "system", "developer")
# Input items that carry nothing for the model here: reasoning (another model's encrypted
# state; this gateway sends none) and the record of a hosted web search (its results are in
# the answer's text that follows).
SKIPPED_ITEMS = ("reasoning", "web_search_call")


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
        elif kind == "input_file":
            text = file_part_text(part, f"{param}[{j}]")
            parts.append({"type": "text", "text": text})
        else:
            raise _bad(
                "only input_text, input_image and input_file content parts are supported",
                f"{param}[{j}]",
            )
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def check_body(body: dict[str, Any]) -> None:
    """Check a Responses body against its declaration (bodies.ResponsesBody: types, bounds),
    or raise a 400 naming the field; the translation then reads the raw JSON members, so a
    tool, item or part type decides in plain code whether and how it is served."""
    decode(body, ResponsesBody)


def to_chat_body(
    body: dict[str, Any], plan: ToolPlan | None = None, *, checked: bool = False
) -> dict[str, Any]:
    """Translate a Responses request body into a chat completions body (checked first with
    check_body unless the caller did: `checked`).

    `plan` is what becomes of the body's tools (tool_kinds.plan_tools; by default with web
    search off): function and custom tools become chat functions, hosted ones are left out.
    """
    if not checked:
        check_body(body)
    messages: list[dict[str, Any]] = []
    if body.get("instructions") is not None:
        messages.append({"role": "system", "content": body["instructions"]})
    raw = body["input"]
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
    else:
        for i, item in enumerate(raw):
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
            elif kind in ("function_call", "custom_tool_call"):
                # A custom tool's call is the call of the function it was offered as.
                arguments = (
                    item.get("arguments", "{}")
                    if kind == "function_call"
                    else custom_arguments(str(item.get("input", "")))
                )
                messages.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": item.get("call_id"),
                                "type": "function",
                                "function": {"name": item.get("name"), "arguments": arguments},
                            }
                        ],
                    }
                )
            elif kind in ("function_call_output", "custom_tool_call_output"):
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": item.get("call_id"),
                        "content": output_text(item.get("output")),
                    }
                )
            elif kind in SKIPPED_ITEMS:
                continue
            else:
                raise _bad(f"input item type {kind!r} is not supported", f"input[{i}].type")
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": messages,
        "stream": body.get("stream", False),
    }
    plan = plan_tools(body.get("tools")) if plan is None else plan
    if body.get("tools") is not None:
        chat["tools"] = [{"type": "function", "function": fn} for fn in plan.functions]
    for name in ("tool_choice", "reasoning", "timeoutMs"):
        if name in body:
            chat[name] = body[name]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and ("name" in choice or choice.get("type") == "function"):
        if choice.get("name") is None:  # a function or a custom tool, by name
            raise _bad("a function `tool_choice` needs the function's `name`", "tool_choice.name")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif isinstance(choice, dict):  # a hosted tool (served or dropped): Codex cannot force it
        chat["tool_choice"] = "auto"
    if body.get("max_output_tokens") is not None:
        chat["max_output_tokens"] = body["max_output_tokens"]
    response_format = text_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def echoed_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Return the request fields the `response` object repeats (kept in ChatRequest.extras)."""
    return {
        name: default if body.get(name) is None else body[name]
        for name, default in ECHO_DEFAULTS.items()
    }


def text_format(text: Any) -> dict[str, Any] | None:
    """Return chat's `response_format` for a Responses `text` object (its `format`).

    The Responses API flattens the schema into the format (`{type: "json_schema", name,
    schema, strict}`) where chat nests it under `json_schema`; both then reach Codex as the
    turn's output schema. `verbosity` and other members are ignored.
    """
    if text is None:
        return None
    fmt = text.get("format")  # types checked by bodies.TextOptions
    if fmt is None:
        return None
    kind = fmt["type"]
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema":
        raise _bad(
            f"text.format type {kind!r} is not supported (text, json_object, json_schema)",
            "text.format.type",
        )
    if fmt.get("schema") is None:
        raise _bad("`text.format.schema` must be a JSON schema object", "text.format.schema")
    require_codex_json(fmt["schema"], "text.format.schema")
    spec = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
    return {"type": "json_schema", "json_schema": spec}
