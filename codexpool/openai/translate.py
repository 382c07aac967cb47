"""Translation between OpenAI chat bodies and Codex turns.

Requests: validate an OpenAI chat body and turn its messages into a Codex turn on a thread
(leading system and developer messages become the thread's instructions; every later message a
Responses item of its own role and place, the last user message the turn's input). Responses: build `chat.completion` objects and `chat.completion.chunk`s.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from .. import fastjson
from ..errors import ApiError
from ..ids import unique_hex
from ..validate import decode
from .bodies import MAX_MESSAGES as MAX_MESSAGES  # re-exported
from .bodies import REASONING_EFFORTS as REASONING_EFFORTS  # re-exported
from .bodies import ROLES as ROLES  # re-exported
from .bodies import (
    ChatBody,
    ChatTool,
    ContentPart,
    ImageRef,
    Message,
    Messages,
    NamedToolChoice,
    ResponseFormat,
)
from .input_files import file_part_text
from .tool_kinds import NO_TOOLS, ToolPlan
from .tool_names import alias, unalias

# Named reasoning modes (legacy `reasoning_mode` field) and the Codex effort each maps to.
REASONING_MODES: dict[str, str] = {
    "minimal": "minimal",
    "fast": "low",
    "low": "low",
    "balanced": "medium",
    "medium": "medium",
    "deep": "high",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
    "ultra": "ultra",
}
TOOL_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@dataclass
class ChatRequest:
    """A validated chat request, ready to become one Codex turn."""  # prompt: the turn's text

    model: str
    prompt: str
    developer_instructions: str | None
    effort: str | None
    stream: bool
    include_usage: bool
    timeout_ms: int | None
    max_tokens: int | None
    raw_model: str = ""
    output_schema: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] = ()  # Codex DynamicToolSpec objects
    tool_results: tuple[tuple[str, str], ...] = ()  # trailing (tool_call_id, content) pairs
    images: tuple[str, ...] = ()  # image URLs (https or data:) of the turn's user message
    # Every image part of the body as (URL, where it is), for the downloads (image_fetch.py).
    image_refs: tuple[tuple[str, str], ...] = ()
    # The conversation as Responses items (translate.Conversation): items[:input_start]
    # are history, the rest the turn's own input.
    items: tuple[dict[str, Any], ...] = ()
    input_start: int = 0
    # What became of a Responses request's tools of other types (custom, hosted): set by the
    # Responses route, read when the answer is shaped and by the engine (web search).
    tool_plan: ToolPlan = NO_TOOLS
    extras: dict[str, Any] = field(default_factory=dict)


def _bad(message: str, param: str | None = None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, code, param=param)


def _messages(messages: Any) -> list[Message]:
    """Return the messages decoded (as ChatBody holds them), decoding raw JSON first."""
    if isinstance(messages, list) and messages and isinstance(messages[0], Message):
        return messages
    return decode(messages, Messages, prefix="messages")


def _content_text(content: str | list[str | ContentPart] | None, index: int) -> str:
    """Flatten a message's content (string or list of parts) into text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    param = f"messages[{index}].content"
    texts: list[str] = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            texts.append(part)
            continue
        ptype = part.type
        if ptype in ("text", "input_text", "output_text"):
            if part.text is None:
                raise _bad("a text content part needs a string `text`", f"{param}[{j}].text")
            texts.append(part.text)
        elif ptype == "refusal":
            texts.append(part.refusal or "")
        elif ptype in ("image_url", "input_image"):
            continue  # images are items of their own (conversation_items)
        elif ptype == "file":  # a text file is inlined, anything else refused (input_files)
            if part.file is None:
                raise _bad("a file content part needs a `file` object", f"{param}[{j}].file")
            texts.append(file_part_text(part.file, f"{param}[{j}]"))
        else:
            raise _bad(
                f"content part type {ptype!r} is not supported by this gateway yet",
                f"{param}[{j}].type",
                "unsupported_content",
            )
    return "\n".join(texts)


IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_IMAGES = 8
MAX_IMAGE_BYTES = 10 * 1024 * 1024


def _image_url(part: ContentPart) -> str | None:
    ref = part.image_url
    return ref.url if isinstance(ref, ImageRef) else ref


def collect_images(messages: Any) -> tuple[tuple[str, str], ...]:
    """Return the (URL, param) of the messages' `image_url` parts, validated.

    Only https URLs and base64 `data:` URLs of PNG, JPEG, GIF or WebP are accepted: plain http
    and other schemes would let a request make the upstream fetch arbitrary addresses. The
    gateway downloads https images itself (image_fetch.py).
    """
    urls: list[str] = []
    params: list[str] = []
    for i, msg in enumerate(_messages(messages)):
        content = msg.content
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, str) or part.type not in ("image_url", "input_image"):
                continue
            param = f"messages[{i}].content[{j}].image_url"
            url = _image_url(part)
            if url is None:
                raise _bad("an image part needs `image_url.url`", param)
            if url.startswith("data:"):
                head, _, data = url.partition(",")
                mime = head[5:].split(";")[0].lower()
                if mime not in IMAGE_TYPES or ";base64" not in head:
                    raise _bad(
                        "data URLs must be base64 PNG, JPEG, GIF or WebP images",
                        param,
                        "unsupported_image",
                    )
                if len(data) * 3 // 4 > MAX_IMAGE_BYTES:
                    raise _bad(
                        f"images may be at most {MAX_IMAGE_BYTES // (1024 * 1024)} MiB",
                        param,
                        "image_too_large",
                    )
            elif not url.startswith("https://"):
                raise _bad("image URLs must be https:// or data: URLs", param, "unsupported_image")
            urls.append(url)
            params.append(param)
    if len(urls) > MAX_IMAGES:
        raise _bad(f"at most {MAX_IMAGES} images per request", "messages", "too_many_images")
    return tuple(zip(urls, params, strict=True))


@dataclass(frozen=True)
class Conversation:
    """A chat body's messages as one Codex turn on a thread.

    `instructions` are the leading system/developer messages (the thread's instructions).
    `items` is every later message as Responses API items, in order: what the thread's history
    holds once the turn has run. The first `input_start` items are history (injected into the
    thread with `thread/inject_items`); the rest, when it is the last user message, is the
    turn's own input (`prompt` and `images`). A conversation ending in tool outputs (or an
    assistant or developer message) has everything in its history and an empty input.
    """

    instructions: str | None
    items: tuple[dict[str, Any], ...]
    input_start: int
    prompt: str
    images: tuple[str, ...]


def _text_item(role: str, text: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def _message_parts(msg: Message, index: int) -> tuple[list[str], list[str]]:
    """Return a message's (texts, image URLs); the images were validated by collect_images."""
    content = msg.content
    texts = [_content_text(content, index)]
    if not isinstance(content, list):
        return texts, []
    images = [
        url
        for part in content
        if not isinstance(part, str)
        and part.type in ("image_url", "input_image")
        and (url := _image_url(part)) is not None
    ]
    return texts, images


def _user_item(texts: list[str], images: list[str]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "input_text", "text": t} for t in texts if t]
    content += [{"type": "input_image", "image_url": url} for url in images]
    if not content:
        content = [{"type": "input_text", "text": ""}]
    return {"type": "message", "role": "user", "content": content}


def conversation_items(messages: Any) -> Conversation:
    """Turn OpenAI chat messages into a Conversation (instructions, items, turn input).

    Each message keeps its role and place: user and assistant text become message items,
    assistant `tool_calls` become `function_call` items, `role: "tool"` messages
    `function_call_output` items, image parts `input_image` parts, and a system or developer
    message after the first other message a developer message at its place. Nothing is folded
    into a transcript, so no message can pose as another role.
    """
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    last_user: tuple[int, list[str], list[str]] | None = None
    has_content = False
    for i, msg in enumerate(_messages(messages)):
        role = msg.role
        texts, images = _message_parts(msg, i)
        text = "\n".join(texts)
        if role in ("system", "developer"):
            if not items:  # leading: the thread's instructions
                if text.strip():
                    instructions.append(text)
            elif text.strip():
                items.append(_text_item("developer", text))
            continue
        if role == "user":
            last_user = (len(items), texts, images)
            items.append(_user_item(texts, images))
            has_content = has_content or bool(text.strip() or images)
        elif role == "assistant":
            calls = msg.tool_calls
            if text or not calls:
                items.append(_text_item("assistant", text))
            for call in calls or ():
                fn = call.function
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.id or "",
                        "name": alias(fn.name or ""),
                        "arguments": fn.arguments if fn.arguments is not None else "{}",
                    }
                )
            has_content = has_content or bool(text.strip() or calls)
        else:  # tool, or the legacy function role (its name stands for the call id)
            call_id = msg.tool_call_id if role == "tool" else msg.name
            items.append({"type": "function_call_output", "call_id": call_id or "", "output": text})
            has_content = True
    if not items:
        raise _bad("`messages` needs at least one user message", "messages")
    if not has_content:
        raise _bad("every message is empty; send some text", "messages")
    if last_user is not None and last_user[0] == len(items) - 1:
        _, texts, images = last_user
        return Conversation(
            "\n\n".join(instructions) or None,
            tuple(items),
            len(items) - 1,
            "\n".join(texts),
            tuple(images),
        )
    return Conversation("\n\n".join(instructions) or None, tuple(items), len(items), "", ())


def resolve_effort(body: ChatBody) -> str | None:
    """Pick the Codex reasoning effort from `reasoning_effort`, `reasoning` or `reasoning_mode`."""
    effort = body.reasoning_effort
    if effort is None and body.reasoning is not None:
        effort = body.reasoning.effort
    if effort is not None:
        return effort
    mode = body.reasoning_mode
    if mode is None:
        return None
    if mode.lower() not in REASONING_MODES:
        raise _bad(
            f"`reasoning_mode` must be one of {', '.join(REASONING_MODES)}", "reasoning_mode"
        )
    return REASONING_MODES[mode.lower()]


def parse_chat_request(body: dict[str, Any] | ChatBody, resolve_model: Any) -> ChatRequest:
    """Validate an OpenAI chat body; `resolve_model(name)` maps a model name or raises."""
    if not isinstance(body, ChatBody):
        body = decode(body, ChatBody)
    if body.functions:
        raise _bad(
            "the legacy `functions` field is not supported; send `tools`",
            "functions",
            "unsupported_parameter",
        )
    tools, tool_instruction = parse_tools(body.tools, body.tool_choice)
    output_schema, format_instruction = parse_response_format(body.response_format)
    max_tokens = body.max_completion_tokens or body.max_tokens or body.max_output_tokens
    image_refs = collect_images(body.messages)  # validates every image part first
    conv = conversation_items(body.messages)
    # Codex always asks the model with `tool_choice: "auto"` and has no lever for it, so a
    # forced choice travels as an instruction in the thread's instructions.
    instructions = (
        "\n\n".join(
            text for text in (conv.instructions, tool_instruction, format_instruction) if text
        )
        or None
    )
    model = body.model.strip()
    return ChatRequest(
        model=resolve_model(model),
        raw_model=model,
        prompt=conv.prompt,
        developer_instructions=instructions,
        effort=resolve_effort(body),
        stream=bool(body.stream),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        timeout_ms=None if body.timeoutMs is None else int(body.timeoutMs),
        max_tokens=None if max_tokens is None else int(max_tokens),
        output_schema=output_schema,
        tools=tools,
        tool_results=trailing_tool_results(body.messages),
        images=conv.images,
        image_refs=image_refs,
        items=conv.items,
        input_start=conv.input_start,
    )


CODEX_INT_RANGE = range(-(2**63), 2**64)  # what Codex's JSON reader takes as an integer


def require_codex_json(value: Any, param: str) -> None:
    """Raise a 400 naming `param` when a schema holds an integer Codex cannot read.

    Codex refuses the whole request (a 502 mid-turn, found by fuzzing) for any integer outside
    64 bits; floats of any size are fine. Nesting is bounded: bodies are at most a few MiB and
    read_json_object already refused pathological depth.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and item not in CODEX_INT_RANGE:
            raise _bad(
                f"{param} holds the integer {item}, beyond 64 bits; write it as a float", param
            )


REQUIRED_TOOL_INSTRUCTION = (
    "Every reply must call at least one of the provided functions; never answer with text only."
)
NAMED_TOOL_INSTRUCTION = "Every reply must call the function `{name}`; never answer with text only."


def parse_tools(raw: Any, choice: Any) -> tuple[tuple[dict[str, Any], ...], str | None]:
    """Map OpenAI `tools` + `tool_choice` to Codex dynamic tools and an optional instruction."""
    if not raw:
        if choice == "required" or isinstance(choice, NamedToolChoice | dict):
            # OpenAI refuses this too: a forced call with nothing to call cannot be honoured.
            raise _bad("`tool_choice` requires `tools`: none were given", "tool_choice")
        return (), None
    if not isinstance(raw[0], ChatTool):
        raw = decode(raw, list[ChatTool], prefix="tools")
    specs: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, tool in enumerate(raw):
        fn = tool.function
        name = fn.name
        if not TOOL_NAME_RE.fullmatch(name):  # the declared pattern's `$` allows a final "\n"
            # OpenAI's rule, and Codex's: it refuses other names mid-turn (was a 502 upstream).
            raise _bad(
                "a function name must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'",
                f"tools[{i}].function.name",
            )
        require_codex_json(fn.parameters, f"tools[{i}].function.parameters")
        if len(alias(name)) > 64:
            raise _bad(
                f"the function name {name!r} reaches the model as {alias(name)!r}"
                " (it reads like one of Codex's own tools), over 64 characters",
                f"tools[{i}].function.name",
            )
        names.add(name)
        specs.append(
            {
                "type": "function",
                "name": alias(name),  # Codex drops one named like its own tools (tool_names)
                "description": fn.description or "",
                "inputSchema": fn.parameters,
            }
        )
    if choice in (None, "auto"):
        return tuple(specs), None
    if choice == "none":
        return (), None
    if choice == "required":
        return tuple(specs), REQUIRED_TOOL_INSTRUCTION
    name = choice.function.name
    if name not in names:
        raise _bad(f"tool_choice names an unknown function {name!r}", "tool_choice")
    return tuple(specs), NAMED_TOOL_INSTRUCTION.format(name=alias(name))


def trailing_tool_results(messages: Any) -> tuple[tuple[str, str], ...]:
    """Return the (tool_call_id, content) pairs of the messages after the last assistant one."""
    decoded = _messages(messages)
    out: list[tuple[str, str]] = []
    for i in range(len(decoded) - 1, -1, -1):
        msg = decoded[i]
        if msg.role != "tool":
            break
        if msg.tool_call_id is not None:
            out.append((msg.tool_call_id, _content_text(msg.content, i)))
    return tuple(reversed(out))


JSON_OBJECT_INSTRUCTION = (
    "Answer with one valid JSON object and nothing else: no prose, no Markdown code fences."
)


def parse_response_format(fmt: ResponseFormat | None) -> tuple[dict[str, Any] | None, str | None]:
    """Map OpenAI `response_format` to (Codex outputSchema, extra developer instruction).

    `json_schema` becomes the turn's `outputSchema` (Codex sends it as the Responses API's
    structured-output format); `json_object` has no schema there, so it becomes an instruction.
    """
    if fmt is None:
        return None, None
    kind = fmt.type
    if kind == "text":
        return None, None
    if kind == "json_object":
        return None, JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        schema = fmt.json_schema.schema if fmt.json_schema is not None else None
        if schema is None:
            raise _bad(
                "`response_format.json_schema.schema` must be a JSON schema object",
                "response_format.json_schema.schema",
            )
        require_codex_json(schema, "response_format.json_schema.schema")
        return schema, None
    raise _bad(
        f"response_format type {kind!r} is not supported (text, json_object, json_schema)",
        "response_format",
        "unsupported_parameter",
    )


def new_completion_id() -> str:
    """Return an id in OpenAI's `chatcmpl-...` form."""
    return "chatcmpl-" + unique_hex(24)


def usage_dict(
    input_tokens: int, cached_tokens: int, output_tokens: int, reasoning_tokens: int
) -> dict[str, Any]:
    """Return OpenAI's `usage` object from Codex token counts."""
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


class ChunkFactory:
    """Builds the `chat.completion.chunk` objects of one streamed answer."""

    def __init__(self, model: str, completion_id: str | None = None) -> None:
        self.id = completion_id or new_completion_id()
        self.model = model
        self.created = int(time.time())
        self._content_parts: tuple[bytes, bytes] | None = None

    def _base(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **self._base(),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def role(self) -> dict[str, Any]:
        """Return the first chunk, which announces the assistant role."""
        return self._chunk({"role": "assistant", "content": ""})

    def content(self, text: str) -> dict[str, Any]:
        """Return a content delta chunk."""
        return self._chunk({"content": text})

    def content_event(self, text: str) -> bytes:
        """Return the SSE event of a content delta, byte for byte `sse.encode(content(text))`.

        The hot path of every stream: only the text is JSON-encoded; the rest of the chunk is
        the same for the whole answer and built once.
        """
        if self._content_parts is None:
            base = fastjson.dumps(self._base())
            self._content_parts = (
                b'data: %s,"choices":[{"index":0,"delta":{"content":' % base[:-1],
                b'},"logprobs":null,"finish_reason":null}]}\n\n',
            )
        head, tail = self._content_parts
        return head + fastjson.dumps(text) + tail

    def reasoning(self, text: str) -> dict[str, Any]:
        """Return a reasoning delta (the `reasoning_content` extension many clients show)."""
        return self._chunk({"reasoning_content": text})

    def tool_call_chunks(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the chunks the SDKs assemble into `tool_calls`: id and name, then arguments."""
        out = []
        for i, call in enumerate(calls):
            head = {"index": i, "id": call["id"], "type": "function"}
            head["function"] = {"name": call["function"]["name"], "arguments": ""}
            out.append(self._chunk({"tool_calls": [head]}))
            args = {"index": i, "function": {"arguments": call["function"]["arguments"]}}
            out.append(self._chunk({"tool_calls": [args]}))
        return out

    def finish(self, reason: str = "stop") -> dict[str, Any]:
        """Return the chunk that carries `finish_reason`."""
        return self._chunk({}, reason)

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        """Return the trailing usage chunk (`stream_options.include_usage`)."""
        return {**self._base(), "choices": [], "usage": usage}


def tool_call_objects(calls: Any) -> list[dict[str, Any]]:
    """Return OpenAI `tool_calls` for Codex function calls (objects with call_id/name/arguments),
    under the names the client gave its functions."""
    return [
        {
            "id": c.call_id,
            "type": "function",
            "function": {"name": unalias(c.name), "arguments": c.arguments},
        }
        for c in calls
    ]


def completion(
    model: str,
    text: str,
    usage: dict[str, Any],
    reasoning: str = "",
    finish: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return a whole `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["content"] = text or None
        message["tool_calls"] = tool_calls
        finish = "tool_calls"
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }
