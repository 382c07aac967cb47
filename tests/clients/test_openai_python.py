"""The official openai Python SDK (its own pinned venv) on chat completions and the Responses
API: plain, streamed, multi-turn, a tool round trip, structured output, reasoning summaries,
file inputs, and the Responses object's echo of tools and tool_choice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .rig import DRIVERS, ClientRig, ok, pinned_python

WEATHER = {
    "kind": "function_call",
    "name": "get_weather",
    "arguments": '{"city": "Paris"}',
    "call_id": "call_w1",
}
STRUCTURED = '{"city": "Paris", "celsius": 18}'


@pytest.fixture(scope="module")
def rig(client_server: Any, fake_backend: Any) -> Iterator[ClientRig]:
    python, _ = pinned_python("openai", "openai")
    with ClientRig(client_server, fake_backend, [python, str(DRIVERS / "py_openai.py")]) as rig:
        yield rig


def test_chat_plain(rig: ClientRig) -> None:
    r = ok(rig.run("chat.plain", rig.backend.reply("Hello there")))
    assert r["text"] == "Hello there" and r["finish_reason"] == "stop"
    assert r["usage"]["prompt_tokens"] == 11


def test_chat_stream(rig: ClientRig) -> None:
    r = ok(rig.run("chat.stream", rig.backend.reply("one two three four", chunks=4)))
    assert r["text"] == "one two three four" and len(r["pieces"]) >= 2
    assert r["finish_reasons"] == ["stop"] and r["usage"]["completion_tokens"] == 4


def test_chat_multi_turn(rig: ClientRig) -> None:
    r = ok(rig.run("chat.multi_turn", rig.backend.reply("Hi Ada."), rig.backend.reply("Ada.")))
    assert r["texts"] == ["Hi Ada.", "Ada."]
    last = json.dumps(rig.backend_bodies()[-1]["input"])
    assert "My name is Ada." in last and "What is my name?" in last


def test_chat_tool_round_trip(rig: ClientRig) -> None:
    r = ok(rig.run("chat.tools", WEATHER, rig.backend.reply("It is 18C in Paris.")))
    assert r["finish_reason"] == "tool_calls"
    assert r["calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]
    assert r["text"] == "It is 18C in Paris."
    assert "18C in Paris" in json.dumps(rig.backend_bodies()[-1]["input"])


def test_chat_structured_output(rig: ClientRig) -> None:
    mark = len(rig.backend_bodies())
    r = ok(rig.run("chat.structured", rig.backend.reply(STRUCTURED)))
    assert r["parsed"] == {"city": "Paris", "celsius": 18}
    fmt = rig.backend_bodies(mark)[0]["text"]["format"]
    assert fmt["type"] == "json_schema" and "celsius" in json.dumps(fmt["schema"])


def test_responses_plain(rig: ClientRig) -> None:
    r = ok(rig.run("responses.plain", rig.backend.reply("Hello there")))
    assert r["text"] == "Hello there" and r["status"] == "completed"
    assert r["usage"]["input_tokens"] == 11


def test_responses_stream(rig: ClientRig) -> None:
    r = ok(rig.run("responses.stream", rig.backend.reply("one two three four", chunks=4)))
    types = [e["type"] for e in r["events"]]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert r["deltas"] >= 2 and r["text"] == "one two three four"
    # Every event parsed into the SDK's own typed class, none left as a plain object.
    assert all(e["cls"].startswith("Response") for e in r["events"]), r["events"]


def test_responses_multi_turn(rig: ClientRig) -> None:
    r = ok(rig.run("responses.multi_turn", rig.backend.reply("Hi Ada."), rig.backend.reply("Ada.")))
    assert r["texts"] == ["Hi Ada.", "Ada."]
    assert "My name is Ada." in json.dumps(rig.backend_bodies()[-1]["input"])


def test_responses_tool_round_trip_echoes_tools_and_tool_choice(rig: ClientRig) -> None:
    r = ok(rig.run("responses.tools", WEATHER, rig.backend.reply("It is 18C in Paris.")))
    assert r["calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]
    assert r["text"] == "It is 18C in Paris."
    # The Responses object says which tools and tool_choice it ran with, as OpenAI's does.
    assert r["echo"]["tool_choice"] == "auto"
    assert [t["name"] for t in r["echo"]["tools"]] == ["get_weather"]
    assert r["echo"]["tools"][0]["type"] == "function"
    assert r["echo"]["tools"][0]["parameters"]["required"] == ["city"]


def test_responses_stream_function_call(rig: ClientRig) -> None:
    r = ok(rig.run("responses.stream_tools", WEATHER))
    assert r["calls"] == [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    assert "response.function_call_arguments.delta" in r["events"]


def test_responses_structured_output(rig: ClientRig) -> None:
    mark = len(rig.backend_bodies())
    r = ok(rig.run("responses.structured", rig.backend.reply(STRUCTURED)))
    assert r["parsed"] == {"city": "Paris", "celsius": 18}
    assert rig.backend_bodies(mark)[0]["text"]["format"]["type"] == "json_schema"


def test_responses_tool_choice_required_without_tools_is_a_400(rig: ClientRig) -> None:
    mark = len(rig.backend_bodies())
    r = rig.run("responses.required_without_tools")
    assert not r["ok"] and r["error_type"] == "BadRequestError" and r["status"] == 400
    assert r["body"]["param"] == "tool_choice" and "tools" in r["body"]["message"]
    assert len(rig.backend_bodies()) == mark  # refused before any turn


REASONING_SEQUENCE = [
    ("response.created", "ResponseCreatedEvent"),
    ("response.output_item.added", "ResponseOutputItemAddedEvent"),
    ("response.reasoning_summary_part.added", "ResponseReasoningSummaryPartAddedEvent"),
    ("response.reasoning_summary_text.delta", "ResponseReasoningSummaryTextDeltaEvent"),
    ("response.reasoning_summary_text.delta", "ResponseReasoningSummaryTextDeltaEvent"),
    ("response.reasoning_summary_text.done", "ResponseReasoningSummaryTextDoneEvent"),
    ("response.reasoning_summary_part.done", "ResponseReasoningSummaryPartDoneEvent"),
    ("response.output_item.done", "ResponseOutputItemDoneEvent"),
    ("response.output_item.added", "ResponseOutputItemAddedEvent"),
    ("response.content_part.added", "ResponseContentPartAddedEvent"),
]


def test_responses_stream_reasoning_summary_events(rig: ClientRig) -> None:
    """The reasoning summary streams as OpenAI's typed events, in OpenAI's order: its own
    output item (index 0) opened, a summary part, text deltas, closed; then the message."""
    step = rig.backend.reply("Answer.", chunks=1, reasoning=["Thinking ", "hard."])
    r = ok(rig.run("responses.reasoning", step))
    events = r["events"]
    assert [(e["type"], e["cls"]) for e in events[: len(REASONING_SEQUENCE)]] == REASONING_SEQUENCE
    added, part_added, d1, d2, text_done, part_done, item_done = events[1:8]
    item_id = added["item"]["id"]
    assert added["item"]["type"] == "reasoning" and added["output_index"] == 0
    for e in (part_added, d1, d2, text_done, part_done):
        assert (e["item_id"], e["output_index"], e["summary_index"]) == (item_id, 0, 0)
    assert (d1["delta"], d2["delta"]) == ("Thinking ", "hard.")
    assert text_done["text"] == "Thinking hard." and part_done["part"]["text"] == "Thinking hard."
    assert item_done["item"]["summary"] == [{"type": "summary_text", "text": "Thinking hard."}]
    message_added = events[8]
    assert message_added["output_index"] == 1 and message_added["item"]["type"] == "message"
    numbers = [e["sequence_number"] for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert [o["type"] for o in r["output"]] == ["reasoning", "message"]
    assert r["text"] == "Answer."


def test_responses_reasoning_summary_in_the_response_object(rig: ClientRig) -> None:
    step = rig.backend.reply("Answer.", chunks=1, reasoning=["Thinking ", "hard."])
    r = ok(rig.run("responses.reasoning_plain", step))
    assert [o["type"] for o in r["output"]] == ["reasoning", "message"]
    assert r["output"][0]["summary"] == [{"type": "summary_text", "text": "Thinking hard."}]
    assert r["text"] == "Answer."


def test_responses_input_file_text_is_inlined(rig: ClientRig) -> None:
    mark = len(rig.backend_bodies())
    r = ok(rig.run("responses.input_file", rig.backend.reply("4242.")))
    assert r["text"] == "4242."
    sent = json.dumps(rig.backend_bodies(mark)[0]["input"])
    assert "notes.txt" in sent and "The launch code is 4242." in sent


def test_responses_input_file_pdf_is_a_400_naming_the_part(rig: ClientRig) -> None:
    mark = len(rig.backend_bodies())
    r = rig.run("responses.input_pdf")
    assert not r["ok"] and r["status"] == 400, r
    assert r["body"]["param"] == "input[0].content[0]"
    assert "input_file" in r["body"]["message"] and "application/pdf" in r["body"]["message"]
    assert len(rig.backend_bodies()) == mark


def test_responses_stream_reasoning_summary_in_two_parts(rig: ClientRig) -> None:
    """A summary of two parts (Codex's summaryIndex) streams as two summary parts of the one
    reasoning item, each opened, filled and closed in turn, as OpenAI streams them."""
    step = rig.backend.reply("Answer.", chunks=1, reasoning=[["One ", "two."], ["Three."]])
    r = ok(rig.run("responses.reasoning", step))
    summary_events = [
        (e["type"].removeprefix("response.reasoning_summary_"), e["summary_index"])
        for e in r["events"]
        if e["type"].startswith("response.reasoning_summary_")
    ]
    assert summary_events == [
        ("part.added", 0),
        ("text.delta", 0),
        ("text.delta", 0),
        ("text.done", 0),
        ("part.done", 0),
        ("part.added", 1),
        ("text.delta", 1),
        ("text.done", 1),
        ("part.done", 1),
    ]
    done = [e for e in r["events"] if e["type"] == "response.reasoning_summary_text.done"]
    assert [e["text"] for e in done] == ["One two.", "Three."]
    assert r["output"][0]["summary"] == [
        {"type": "summary_text", "text": "One two."},
        {"type": "summary_text", "text": "Three."},
    ]


def test_responses_stream_reasoning_then_a_function_call(rig: ClientRig) -> None:
    """Reasoning before a function call: the reasoning item (output 0) is closed before the
    call's item (output 1) is added."""
    r = ok(rig.run("responses.reasoning_tools", {**WEATHER, "reasoning": ["Need the weather."]}))
    items = [
        (e["type"], e["output_index"], e["item"]["type"])
        for e in r["events"]
        if e["type"].startswith("response.output_item.")
    ]
    assert items == [
        ("response.output_item.added", 0, "reasoning"),
        ("response.output_item.done", 0, "reasoning"),
        ("response.output_item.added", 1, "function_call"),
        ("response.output_item.done", 1, "function_call"),
    ]
    args = [e for e in r["events"] if e["type"] == "response.function_call_arguments.done"]
    assert args[0]["output_index"] == 1 and args[0]["arguments"] == '{"city": "Paris"}'
    assert [o["type"] for o in r["output"]] == ["reasoning", "function_call"]
