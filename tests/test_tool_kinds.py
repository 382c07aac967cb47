"""Responses tools of other types (issue 17 item 3): custom tools as one-string functions and
back, hosted tools served or dropped by name, never refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from codexpool.errors import ApiError
from codexpool.openai.models import ModelCatalog
from codexpool.openai.responses import to_chat_body
from codexpool.openai.responses_writer import ResponsesWriter
from codexpool.openai.tool_kinds import (
    DROPPED_HEADER,
    custom_arguments,
    custom_input,
    output_text,
    plan_tools,
)
from codexpool.openai.translate import parse_chat_request

CATALOG = ModelCatalog()
PATCH_GRAMMAR = 'start: "*** Begin Patch" LF hunk+ "*** End Patch"'
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files. This is a FREEFORM tool.",
    "format": {"type": "grammar", "syntax": "lark", "definition": PATCH_GRAMMAR},
}
# What the Codex CLI 0.171 offers with every request (abridged), as captured on loopback.
CODEX_CLI_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Runs a command in a PTY.",
        "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
    },
    APPLY_PATCH,
    {"type": "tool_search", "execution": "client", "description": "# Tool discovery"},
    {"type": "web_search", "external_web_access": False, "search_content_types": ["text"]},
]


def test_the_codex_cli_tool_set_is_planned_not_refused() -> None:
    plan = plan_tools(CODEX_CLI_TOOLS)
    assert [f["name"] for f in plan.functions] == ["exec_command", "apply_patch"]
    assert plan.custom == {"apply_patch"}
    assert plan.dropped == ("tool_search", "web_search") and plan.web_search is None
    assert plan.headers() == {DROPPED_HEADER: "tool_search,web_search"}
    [warning] = plan.warnings()
    assert warning["tools"] == ["tool_search", "web_search"]
    assert "tool_search, web_search" in warning["message"]


def test_web_search_is_served_when_the_setting_allows_it() -> None:
    plan = plan_tools(CODEX_CLI_TOOLS, web_search=True)
    assert plan.web_search == "cached"  # the CLI's external_web_access: false
    assert plan.dropped == ("tool_search",)
    assert plan_tools([{"type": "web_search_preview"}], web_search=True).web_search == "live"
    assert plan_tools([{"type": "web_search"}], web_search=False).dropped == ("web_search",)


def test_each_dropped_type_is_named_once_in_order() -> None:
    tools = [{"type": "file_search"}, {"type": "local_shell"}, {"type": "file_search"}]
    assert plan_tools(tools).dropped == ("file_search", "local_shell")
    assert plan_tools(None).headers() == {} and plan_tools([]).warnings() == []


def test_a_custom_tool_is_a_function_of_one_string_with_its_grammar() -> None:
    [fn] = plan_tools([APPLY_PATCH]).functions
    assert fn["parameters"] == {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The tool's input."}},
        "required": ["input"],
        "additionalProperties": False,
    }
    assert fn["description"].startswith("Edit files.")
    assert "lark grammar" in fn["description"] and PATCH_GRAMMAR in fn["description"]
    [plain] = plan_tools([{"type": "custom", "name": "note"}]).functions
    assert "free text" in plain["description"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"input": "*** Begin Patch\\n*** End Patch"}', "*** Begin Patch\n*** End Patch"),
        ('{"patch": "raw"}', "raw"),  # a model that named the argument otherwise
        ('"just a string"', "just a string"),
        ("not json at all", "not json at all"),
        ('{"a": 1, "b": 2}', '{"a": 1, "b": 2}'),
    ],
)
def test_custom_input_reads_the_call_arguments(arguments: str, expected: str) -> None:
    assert custom_input(arguments) == expected


def test_custom_arguments_round_trip() -> None:
    text = 'line "one"\nline ü'
    assert custom_input(custom_arguments(text)) == text


def test_tool_outputs_as_text() -> None:
    assert output_text("ok") == "ok"
    parts = [{"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": "x"}]
    assert output_text(parts) == "a\n[input_image omitted]"
    assert output_text({"exit": 0}) == '{"exit": 0}' and output_text(None) == ""


@pytest.mark.parametrize(
    "tools",
    [
        "nope",
        [{"name": "no type"}],
        [{"type": "custom"}],  # no name
        [{"type": "custom", "name": "bad name!"}],
    ],
)
def test_malformed_tools_are_a_clean_400(tools: Any) -> None:
    body = {"model": "codex", "input": "hi", "tools": tools}
    with pytest.raises(ApiError) as caught:
        parse_chat_request(to_chat_body(body, plan_tools(tools)), CATALOG.resolve)
    assert caught.value.status == 400 and caught.value.param.startswith("tools")


def test_a_codex_cli_request_translates_with_its_custom_calls_and_outputs() -> None:
    """The Codex CLI sends its whole history every time: custom tool calls and their outputs,
    reasoning items, function calls; none of them is refused, hosted tools are left out."""
    body = {
        "model": "codex",
        "instructions": "",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "D"}],
            },
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Go"}]},
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAA"},
            {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "P"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"},
            {"type": "function_call", "call_id": "c2", "name": "exec_command", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "ls"}],
            },
        ],
        "tools": CODEX_CLI_TOOLS,
        "tool_choice": "auto",
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    plan = plan_tools(body["tools"])
    req = parse_chat_request(to_chat_body(body, plan), CATALOG.resolve)
    assert [t["name"] for t in req.tools] == ["client_exec_command", "client_apply_patch"]
    calls = [i for i in req.items if i["type"] == "function_call"]
    assert calls[0]["name"] == "client_apply_patch"
    assert json.loads(calls[0]["arguments"]) == {"input": "P"}
    assert req.tool_results == (("c2", "ls"),)
    outputs = [i["output"] for i in req.items if i["type"] == "function_call_output"]
    assert outputs == ["Done!", "ls"]


def test_a_hosted_tool_choice_leaves_the_choice_to_the_model() -> None:
    body = {
        "model": "codex",
        "input": "hi",
        "tools": CODEX_CLI_TOOLS,
        "tool_choice": {"type": "web_search_preview"},
    }
    req = parse_chat_request(to_chat_body(body, plan_tools(body["tools"])), CATALOG.resolve)
    assert "must call" not in (req.developer_instructions or "")
    body["tool_choice"] = {"type": "custom", "name": "apply_patch"}
    req = parse_chat_request(to_chat_body(body, plan_tools(body["tools"])), CATALOG.resolve)
    assert "`client_apply_patch`" in (req.developer_instructions or "")


def test_the_response_names_dropped_tools() -> None:
    body = {"model": "codex", "input": "hi", "tools": CODEX_CLI_TOOLS}
    plan = plan_tools(body["tools"])
    req = parse_chat_request(to_chat_body(body, plan), CATALOG.resolve)
    req.tool_plan = plan
    writer = ResponsesWriter(req)
    assert writer.response("completed", None, [])["warnings"][0]["tools"] == [
        "tool_search",
        "web_search",
    ]
    assert writer.headers() == {DROPPED_HEADER: "tool_search,web_search"}
    plain = ResponsesWriter(
        parse_chat_request(to_chat_body({**body, "tools": []}), CATALOG.resolve)
    )
    assert "warnings" not in plain.response("completed", None, []) and plain.headers() == {}
