"""Hypothesis properties of the OpenAI <-> Codex translation (unit, fast, no codex binary).

Requests: `parse_chat_request` / `conversation_items` never fail on any JSON with anything but
a clean 4xx ApiError; on valid conversations every message becomes items of its own role at its
place (leading system and developer messages the instructions), tool calls and results keep
their call ids, and the last user message is the turn's input.

Answers: the real `driver.stream` / `driver.complete` with the chat writer, driven by generated Codex event sequences
(served by a real aiohttp server and read back over loopback): the content deltas add up to the
text, every event is a well-formed `chat.completion.chunk`, exactly one finish_reason, a usage
chunk only when asked, `[DONE]` last; a failure mid-stream is one error event before `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codexpool.codex.events import Heartbeat, ReasoningDelta, TextDelta, TurnError, Usage
from codexpool.errors import ApiError
from codexpool.openai import chat, driver
from codexpool.openai.models import ModelCatalog
from codexpool.openai.responses import to_chat_body
from codexpool.openai.responses_writer import ResponsesWriter
from codexpool.openai.translate import (
    ROLES,
    ChatRequest,
    ChunkFactory,
    conversation_items,
    parse_chat_request,
    trailing_tool_results,
)

CATALOG = ModelCatalog()
PROPS = settings(max_examples=150, deadline=None, derandomize=True, database=None)

# --- anything-goes JSON -----------------------------------------------------------------------

KEYS = st.sampled_from(
    [
        "role",
        "content",
        "type",
        "text",
        "name",
        "tool_calls",
        "tool_call_id",
        "function",
        "arguments",
        "image_url",
        "url",
        "messages",
        "model",
        "tools",
        "tool_choice",
        "response_format",
        "json_schema",
        "schema",
        "stream",
        "stream_options",
        "reasoning",
        "effort",
        "input",
        "call_id",
        "output",
        "instructions",
        "parameters",
        "n",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=True)
    | st.sampled_from(ROLES)
    | st.sampled_from(["text", "function", "image_url", "message", "auto", "required", "codex"])
    | st.text(max_size=8)
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)


@PROPS
@given(body=st.dictionaries(KEYS, ANY_JSON, max_size=8))
def test_parse_chat_request_raises_nothing_but_a_clean_4xx(body: dict[str, Any]) -> None:
    """Whatever the JSON object, the chat parser answers or raises a 4xx ApiError."""
    try:
        parse_chat_request(body, CATALOG.resolve)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message


@PROPS
@given(body=st.dictionaries(KEYS, ANY_JSON, max_size=8))
def test_responses_translation_raises_nothing_but_a_clean_4xx(body: dict[str, Any]) -> None:
    """Same for a Responses body: translation, then the chat parser."""
    try:
        parse_chat_request(to_chat_body(body), CATALOG.resolve)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message


@PROPS
@given(messages=st.lists(st.dictionaries(KEYS, ANY_JSON, max_size=5), max_size=5) | ANY_JSON)
def test_conversation_items_raises_nothing_but_a_400(messages: Any) -> None:
    try:
        conversation_items(messages)
    except ApiError as exc:
        assert exc.status == 400 and exc.param is not None and exc.param.startswith("messages")


# --- valid conversations ----------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
PARTS = st.lists(
    TEXT.map(lambda t: {"type": "text", "text": t}) | TEXT, min_size=1, max_size=3
).map(lambda parts: parts)


def _content_strategy() -> st.SearchStrategy[Any]:
    return TEXT | PARTS


def _plain(content: Any) -> str:
    """The text of a generated content value, as the parser should see it."""
    if isinstance(content, str):
        return content
    return "\n".join(p if isinstance(p, str) else p["text"] for p in content)


TOOL_CALL = st.builds(
    lambda cid, name, args: {
        "id": cid,
        "type": "function",
        "function": {"name": name, "arguments": args},
    },
    st.text("abc123_", min_size=1, max_size=6),
    st.text("abcdefgh_", min_size=1, max_size=8),
    st.sampled_from(["{}", '{"a": 1}', '{"q": "x"}']),
)


@st.composite
def message(draw: st.DrawFn) -> dict[str, Any]:
    role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
    msg: dict[str, Any] = {"role": role, "content": draw(_content_strategy())}
    if role == "assistant" and draw(st.booleans()):
        msg["tool_calls"] = draw(st.lists(TOOL_CALL, min_size=1, max_size=2))
    if role == "tool":
        msg["tool_call_id"] = draw(st.text("abc123_", min_size=1, max_size=6))
        if draw(st.booleans()):
            msg["name"] = draw(st.text("xyz", min_size=1, max_size=4))
    return msg


CONVERSATIONS = st.lists(message(), min_size=1, max_size=8)


def _expected(messages: list[dict[str, Any]]) -> tuple[str | None, list[Any]]:
    """The reference model: (instructions, items) as conversation_items should build them."""
    instructions: list[str] = []
    items: list[Any] = []
    for m in messages:
        text = _plain(m["content"])
        if m["role"] in ("system", "developer"):
            if text.strip():
                (items.append(("developer", text)) if items else instructions.append(text))
            continue
        if m["role"] == "user":
            items.append(("user", text))
        elif m["role"] == "assistant":
            if text or not m.get("tool_calls"):
                items.append(("assistant", text))
            for call in m.get("tool_calls", []):
                fn = call["function"]
                items.append(("function_call", call["id"], fn["name"], fn["arguments"]))
        else:
            items.append(("function_call_output", m["tool_call_id"], text))
    return ("\n\n".join(instructions) or None), items


def _shape(item: dict[str, Any]) -> Any:
    if item["type"] == "message":
        return (item["role"], "".join(p["text"] for p in item["content"]))
    if item["type"] == "function_call":
        return ("function_call", item["call_id"], item["name"], item["arguments"])
    return ("function_call_output", item["call_id"], item["output"])


@PROPS
@given(messages=CONVERSATIONS)
def test_every_message_becomes_items_of_its_role_at_its_place(
    messages: list[dict[str, Any]],
) -> None:
    instructions, items = _expected(messages)
    try:
        conv = conversation_items(messages)
    except ApiError as exc:
        # Only the two documented refusals of a well-formed list.
        assert exc.status == 400 and exc.param == "messages"
        turns = [m for m in messages if m["role"] not in ("system", "developer")]
        assert not items or not any(
            _plain(m["content"]).strip() or m["role"] == "tool" or m.get("tool_calls")
            for m in turns
        )
        return
    assert conv.instructions == instructions
    assert [_shape(i) for i in conv.items] == items
    if items and items[-1][0] == "user":  # the last user message is the turn's input
        assert conv.input_start == len(items) - 1 and conv.prompt == items[-1][1]
    else:
        assert conv.input_start == len(items) and conv.prompt == ""


@PROPS
@given(messages=CONVERSATIONS)
def test_trailing_tool_results_are_the_tool_messages_after_the_last_other(
    messages: list[dict[str, Any]],
) -> None:
    tail: list[dict[str, Any]] = []
    for m in reversed(messages):
        if m["role"] != "tool":
            break
        tail.insert(0, m)
    assert trailing_tool_results(messages) == tuple(
        (m["tool_call_id"], _plain(m["content"])) for m in tail
    )


# --- answers: chunks and completions ----------------------------------------------------------

DELTA_TEXT = st.text(max_size=2) | st.text(max_size=12)  # plenty of 0-2 character deltas
EVENT = st.one_of(
    DELTA_TEXT.map(TextDelta),
    DELTA_TEXT.map(ReasoningDelta),
    st.just(Heartbeat()),
    st.builds(Usage, *(st.integers(0, 10_000) for _ in range(4))),
)


def _req(stream: bool, include_usage: bool) -> ChatRequest:
    return ChatRequest(
        model="",
        raw_model="codex",
        prompt="p",
        developer_instructions=None,
        effort=None,
        stream=stream,
        include_usage=include_usage,
        timeout_ms=None,
        max_tokens=None,
    )


async def _events(events: list[Any], fail: bool) -> AsyncIterator[Any]:
    for event in events:
        yield event
    if fail:
        raise TurnError("upstream", "boom")


async def _serve(
    events: list[Any],
    fail: bool,
    include_usage: bool,
    shape: Callable[[ChatRequest], driver.AnswerWriter] = chat.ChatWriter,
) -> tuple[int, bytes]:
    """Serve one stream from these events through a real aiohttp server; read it back."""

    async def handler(request: web.Request) -> web.StreamResponse:
        req = _req(True, include_usage)
        try:
            writer = shape(req)
            return await driver.stream(request, _events(events, fail), writer, driver.TurnOutcome())
        except ApiError as exc:
            return exc.response()

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/")
        return resp.status, await resp.read()


def _data_lines(raw: bytes) -> list[str]:
    blocks = [b for b in raw.decode().split("\n\n") if b]
    lines = []
    for block in blocks:
        if block.startswith(":"):
            continue  # keep-alive comment
        assert block.startswith("data: ") and "\n" not in block, block
        lines.append(block[len("data: ") :])
    return lines


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(events=st.lists(EVENT, max_size=8), fail=st.booleans(), include_usage=st.booleans())
def test_stream_chunks_add_up_to_the_text(
    events: list[Any], fail: bool, include_usage: bool
) -> None:
    status, raw = asyncio.run(_serve(events, fail, include_usage))
    # Any event opens the stream, a Heartbeat too: a turn silent past the keep-alive interval
    # gets its headers and pings rather than nothing (sse.flush).
    started = bool(events)
    if fail and not started:
        # Nothing reached the client yet: a real HTTP error instead of a 200 stream.
        assert status == 502 and json.loads(raw)["error"]["code"] == "upstream_error"
        return
    assert status == 200
    lines = _data_lines(raw)
    assert lines[-1] == "[DONE]" and "[DONE]" not in lines[:-1]
    objects = [json.loads(line) for line in lines[:-1]]
    chunks = [o for o in objects if "error" not in o]
    finishes, content, reasoning, usage_chunks = [], [], [], []
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-")
    for c in chunks:
        assert c["object"] == "chat.completion.chunk" and c["model"] == "codex"
        assert isinstance(c["created"], int)
        if not c["choices"]:
            usage_chunks.append(c)
            continue
        (choice,) = c["choices"]
        assert choice["index"] == 0
        if choice["finish_reason"] is not None:
            finishes.append(choice["finish_reason"])
        content.append(choice["delta"].get("content") or "")
        reasoning.append(choice["delta"].get("reasoning_content") or "")
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "".join(content) == text
    assert "".join(reasoning) == "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    if fail:
        # The failure arrives as one error event right before [DONE]; no finish, no usage.
        assert "error" in objects[-1] and objects[-1]["error"]["code"] == "upstream_error"
        assert sum("error" in o for o in objects) == 1
        assert finishes == [] and usage_chunks == []
        return
    assert finishes == ["stop"]
    assert objects[-1 if not include_usage else -2]["choices"][0]["finish_reason"] == "stop"
    if include_usage:
        last_usage = [e for e in events if isinstance(e, Usage)]
        (u,) = usage_chunks
        assert u is objects[-1]
        want = last_usage[-1].input_tokens if last_usage else 0
        assert u["usage"]["prompt_tokens"] == want
        assert (
            u["usage"]["total_tokens"]
            == u["usage"]["prompt_tokens"] + (u["usage"]["completion_tokens"])
        )
    else:
        assert usage_chunks == []


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(events=st.lists(EVENT, max_size=8), fail=st.booleans())
def test_responses_stream_events_are_numbered_and_add_up(events: list[Any], fail: bool) -> None:
    """The same driver with the Responses writer: every event's `event:` line names its data's
    `type`, sequence numbers count 1, 2, ..., the text deltas and the completed response both
    hold the text, and a failure mid-stream is one `error` event that says it came upstream."""
    status, raw = asyncio.run(_serve(events, fail, False, ResponsesWriter))
    if fail and not events:
        assert status == 502 and json.loads(raw)["error"]["source"] == "upstream"
        return
    assert status == 200
    parsed = []
    for block in raw.decode().split("\n\n"):
        if not block or block.startswith(":"):
            continue  # keep-alive comment
        head, data = block.split("\n")
        assert head.startswith("event: ") and data.startswith("data: "), block
        event = json.loads(data[len("data: ") :])
        assert event["type"] == head[len("event: ") :], block
        parsed.append(event)
    kinds = [e["type"] for e in parsed]
    assert [e["sequence_number"] for e in parsed] == list(range(1, len(parsed) + 1))
    assert kinds[0] == "response.created"
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "".join(e["delta"] for e in parsed if e["type"] == "response.output_text.delta") == text
    if fail:
        assert kinds.count("error") == 1 and "response.completed" not in kinds
        error = parsed[-1]
        assert error["source"] == "upstream" and error["code"] == "upstream_error", error
        return
    assert kinds[-1] == "response.completed" and "error" not in kinds
    response = parsed[-1]["response"]
    assert response["status"] == "completed" and response["id"].startswith("resp_")
    messages = [item for item in response["output"] if item["type"] == "message"]
    assert "".join(p["text"] for item in messages for p in item["content"]) == text
    # The reasoning summary streamed before the text is the reasoning item's summary.
    streamed = "".join(
        e["delta"] for e in parsed if e["type"] == "response.reasoning_summary_text.delta"
    )
    summary = [i["summary"] for i in response["output"] if i["type"] == "reasoning"]
    assert summary == ([[{"type": "summary_text", "text": streamed}]] if streamed else [])


@PROPS
@given(events=st.lists(EVENT, max_size=8))
def test_complete_answer_holds_the_whole_text(events: list[Any]) -> None:
    req = _req(False, False)
    body = asyncio.run(
        driver.complete(_events(events, False), chat.ChatWriter(req), driver.TurnOutcome())
    )
    (choice,) = body["choices"]
    assert body["object"] == "chat.completion"
    assert choice["message"]["content"] == "".join(
        e.text for e in events if isinstance(e, TextDelta)
    )
    assert choice["finish_reason"] == "stop"
    usage = [e for e in events if isinstance(e, Usage)]
    assert body["usage"]["completion_tokens"] == (usage[-1].output_tokens if usage else 0)
    json.dumps(body)  # serialisable as is


@PROPS
@given(texts=st.lists(st.text(max_size=10), max_size=6), reason=st.sampled_from(["stop", "length"]))
def test_chunk_factory_shapes(texts: list[str], reason: str) -> None:
    factory = ChunkFactory("m")
    chunks = [factory.role(), *(factory.content(t) for t in texts), factory.finish(reason)]
    for c in chunks:
        assert json.loads(json.dumps(c)) == c
        assert c["id"] == factory.id and c["object"] == "chat.completion.chunk"
        assert len(c["choices"]) == 1
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "".join(texts)
    assert [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]
    ] == [reason]
    usage = factory.usage({"prompt_tokens": 1})
    assert usage["choices"] == [] and usage["id"] == factory.id


# --- valid bodies with one or two values swapped for arbitrary JSON ------------------------------

TOOLS = st.lists(
    st.builds(
        lambda name: {"type": "function", "function": {"name": name, "parameters": {}}},
        st.sampled_from(["a", "b", "lookup"]),
    ),
    max_size=2,
)
CHAT_BODIES = st.fixed_dictionaries(
    {"model": st.just("codex"), "messages": CONVERSATIONS},
    optional={
        "stream": st.booleans(),
        "stream_options": st.just({"include_usage": True}),
        "tools": TOOLS,
        "tool_choice": st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": "a"}}]
        ),
        "response_format": st.sampled_from(
            [{"type": "json_object"}, {"type": "json_schema", "json_schema": {"schema": {}}}]
        ),
        "max_tokens": st.integers(1, 100),
        "reasoning_effort": st.sampled_from(["low", "high"]),
        "reasoning_mode": st.sampled_from(["fast", "deep"]),
    },
)
RESPONSES_BODIES = st.fixed_dictionaries(
    {
        "model": st.just("codex"),
        "input": TEXT
        | st.lists(
            st.sampled_from(
                [
                    {"type": "message", "role": "user", "content": "hi"},
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "x"}],
                    },
                    {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "42"},
                ]
            ),
            min_size=1,
            max_size=4,
        ),
    },
    optional={
        "instructions": TEXT,
        "tools": st.just([{"type": "function", "name": "a", "parameters": {}}]),
        "tool_choice": st.sampled_from(["auto", {"type": "function", "name": "a"}]),
    },
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a JSON value (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, bodies: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid body with one to three values replaced by arbitrary JSON."""
    body = json.loads(json.dumps(draw(bodies)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = draw(ANY_JSON)
    return body


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(body=mutated(CHAT_BODIES))
def test_mutated_chat_bodies_get_a_clean_4xx_or_pass(body: dict[str, Any]) -> None:
    """One wrong value deep inside an otherwise valid body is a 4xx naming it, never a crash."""
    try:
        parse_chat_request(body, CATALOG.resolve)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(body=mutated(RESPONSES_BODIES))
def test_mutated_responses_bodies_get_a_clean_4xx_or_pass(body: dict[str, Any]) -> None:
    try:
        parse_chat_request(to_chat_body(body), CATALOG.resolve)
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message
