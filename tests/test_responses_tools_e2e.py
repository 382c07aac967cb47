"""Issue 17 item 3: tools of other types on `/v1/responses`, through the real server and the
real codex binary (fake ChatGPT backend), read with the official SDK.

A `custom` (freeform) tool reaches the model as a function of one string argument and comes
back as a `custom_tool_call`, plain and streamed, through the parked tool-turn machinery;
its `custom_tool_call_output` resumes the turn. Hosted tools are dropped by name (header and
`warnings`), or, for `web_search` with the `webSearch` setting, offered as Codex's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codexpool.testing.fake_backend import codex_overrides

from .e2e_helpers import link_user

pytestmark = pytest.mark.e2e

RUN_SQL = {
    "type": "custom",
    "name": "run_sql",
    "description": "Run one SQL statement.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "SELECT" /.+/'},
}
HOSTED = [
    {"type": "web_search", "external_web_access": False},
    {"type": "tool_search", "execution": "client", "description": "Tool discovery"},
]


def _custom_call(call_id: str, name: str = "run_sql", text: str = "SELECT 1") -> dict:
    return {
        "kind": "function_call",
        "name": name,
        "arguments": json.dumps({"input": text}),
        "call_id": call_id,
    }


def _upstream(fake_backend: Any) -> dict[str, Any]:
    return fake_backend.requests("/codex/responses")[-1]["body"]


def test_custom_tool_round_trip_and_hosted_tools_dropped_by_name(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    server, key = linked
    client = openai_client(server, key)
    fake_backend.script("acct_alice", _custom_call("call_c1"), fake_backend.reply("One row."))
    raw = client.responses.with_raw_response.create(
        model="codex",
        input="How many rows?",
        tools=[RUN_SQL, *HOSTED],  # type: ignore[list-item]
    )
    assert raw.headers["x-codexpool-dropped-tools"] == "web_search,tool_search"
    first = raw.parse()
    [call] = [item for item in first.output if item.type == "custom_tool_call"]
    assert (call.call_id, call.name, call.input) == ("call_c1", "run_sql", "SELECT 1")
    warnings = json.loads(raw.text)["warnings"]
    assert warnings[0]["type"] == "dropped_tools"
    assert warnings[0]["tools"] == ["web_search", "tool_search"]

    upstream_tools = _upstream(fake_backend)["tools"]
    assert [t["type"] for t in upstream_tools] == ["function"]  # no hosted tool went up
    assert upstream_tools[0]["name"] == "run_sql"
    assert list(upstream_tools[0]["parameters"]["properties"]) == ["input"]
    assert 'start: "SELECT" /.+/' in upstream_tools[0]["description"]

    second = client.responses.create(
        model="codex",
        previous_response_id=first.id,
        input=[{"type": "custom_tool_call_output", "call_id": "call_c1", "output": "1 row"}],
        tools=[RUN_SQL, *HOSTED],  # type: ignore[list-item]
    )
    assert second.output_text == "One row."
    outputs = [i for i in _upstream(fake_backend)["input"] if i["type"] == "function_call_output"]
    assert outputs[-1]["call_id"] == "call_c1" and outputs[-1]["output"] == "1 row"


def test_custom_tool_call_streams_its_input_events(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    from openai.types.responses import (
        ResponseCustomToolCallInputDeltaEvent,
        ResponseCustomToolCallInputDoneEvent,
        ResponseOutputItemAddedEvent,
        ResponseOutputItemDoneEvent,
    )

    server, key = linked
    client = openai_client(server, key)
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"
    # apply_patch is also one of Codex's own names: it travels as client_apply_patch.
    apply_patch = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
    fake_backend.script(
        "acct_alice",
        _custom_call("call_p1", "client_apply_patch", patch),
        fake_backend.reply("Patched."),
    )
    with client.responses.stream(
        model="codex",
        input="Add a.txt",
        tools=[apply_patch, *HOSTED],  # type: ignore[list-item]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == [
        "response.created",
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, delta, done, item_done = events[1:5]
    assert isinstance(added, ResponseOutputItemAddedEvent)
    assert added.item.type == "custom_tool_call" and added.item.name == "apply_patch"
    assert isinstance(delta, ResponseCustomToolCallInputDeltaEvent) and delta.delta == patch
    assert isinstance(done, ResponseCustomToolCallInputDoneEvent) and done.input == patch
    assert delta.item_id == done.item_id == added.item.id
    assert isinstance(item_done, ResponseOutputItemDoneEvent)
    assert item_done.item.type == "custom_tool_call" and item_done.item.input == patch
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    assert [t["name"] for t in _upstream(fake_backend)["tools"]] == ["client_apply_patch"]
    [call] = [i for i in final.output if i.type == "custom_tool_call"]
    assert call.call_id == "call_p1" and call.input == patch

    # The client sends its whole history back (as the Codex CLI does): the parked turn resumes.
    with client.responses.stream(
        model="codex",
        input=[
            {"role": "user", "content": "Add a.txt"},
            {
                "type": "custom_tool_call",
                "call_id": "call_p1",
                "name": "apply_patch",
                "input": patch,
            },
            {"type": "custom_tool_call_output", "call_id": "call_p1", "output": "Done!"},
        ],
        tools=[apply_patch],  # type: ignore[list-item]
    ) as stream:
        assert stream.get_final_response().output_text == "Patched."
    outputs = [i for i in _upstream(fake_backend)["input"] if i["type"] == "function_call_output"]
    assert outputs[-1] == {**outputs[-1], "call_id": "call_p1", "output": "Done!"}


def test_web_search_is_codex_own_when_the_setting_is_on(
    live_server_factory: Any,
    fake_backend: Any,
    tmp_path: Path,
    openai_client: Any,
) -> None:
    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url), webSearch=True
    )
    key = link_user(server, tmp_path, "alice", "acct_alice")
    fake_backend.set_usage("acct_alice", primary_used=10, secondary_used=5)
    server.start()
    client = openai_client(server, key)
    raw = client.responses.with_raw_response.create(
        model="codex",
        input="News?",
        tools=[{"type": "web_search"}, {"type": "local_shell"}],  # type: ignore[list-item]
    )
    assert raw.headers["x-codexpool-dropped-tools"] == "local_shell"
    assert raw.parse().output_text
    [search] = [t for t in _upstream(fake_backend)["tools"] if t["type"] == "web_search"]
    assert search["external_web_access"] is True  # live
    assert "local_shell" not in json.dumps(_upstream(fake_backend)["tools"])

    # The Codex CLI's own `external_web_access: false` asks for the cached search.
    client.responses.create(
        model="codex",
        input="News?",
        tools=[{"type": "web_search", "external_web_access": False}],  # type: ignore[list-item]
    )
    [search] = [t for t in _upstream(fake_backend)["tools"] if t["type"] == "web_search"]
    assert search["external_web_access"] is False

    # Without the tool in the request, the thread has no web search.
    client.responses.create(model="codex", input="Hi")
    assert "web_search" not in json.dumps(_upstream(fake_backend).get("tools", []))
