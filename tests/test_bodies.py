"""Issue 15 item 1: each request body is declared once (msgspec), and that declaration is both
what the handler decodes and what the OpenAPI document says.

- the document's request body of every route is the JSON Schema of the type its handler
  decodes, and for generated bodies (valid ones with one member broken or dropped) the
  document's schema and the decoder agree on accept/refuse;
- a refusal is OpenAI's 400 with `param` naming the field, however deep;
- decoding is strict: `"true"` is no boolean, `"5"` no number;
- `timeoutMs` follows one rule on every route that takes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codexpool.bodies import EXECUTE_CODES, ExecuteRun, QuickTest
from codexpool.errors import ApiError
from codexpool.execute import parse_execute_request
from codexpool.openai.bodies import ChatBody, ResponsesBody
from codexpool.openai.models import ModelCatalog
from codexpool.openai.responses import to_chat_body
from codexpool.openai.tool_kinds import plan_tools
from codexpool.openai.translate import parse_chat_request
from codexpool.openapi import openapi_document, route_table
from codexpool.routes.quicktest import parse_quick_request
from codexpool.validate import decode, schema_hook

from .users_helpers import assert_openai_error, call, new_portal_user, rotate_user_key

CATALOG = ModelCatalog()
CHAT = "/api/openai/v1/chat/completions"


def _body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    (op,) = [op for op in doc["paths"][path].values() if "requestBody" in op]
    return op["requestBody"]["content"]["application/json"]["schema"]


def test_every_documented_body_is_the_type_its_handler_decodes() -> None:
    """Each body in the document is exactly msgspec's schema of the declared type (nothing
    added or changed by hand), down to the components it refers to."""
    doc = openapi_document()
    routes = [r for r in route_table() if r.body is not None]
    assert len(routes) >= 15  # every body-reading route, not just a few
    for route in routes:
        (schema,), components = msgspec.json.schema_components(
            [route.body], schema_hook=schema_hook, ref_template="#/components/schemas/{name}"
        )
        assert _body_schema(doc, route.path) == schema, route.path
        for name, component in components.items():
            assert doc["components"]["schemas"][name] == component, (route.path, name)


VALID: dict[type, dict[str, Any]] = {
    ChatBody: {
        "model": "codex",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"schema": {}}},
        "max_tokens": 100,
        "timeoutMs": 5000,
        "reasoning": {"effort": "low"},
    },
    ResponsesBody: {
        "model": "codex",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ],
        "instructions": "be brief",
        "tools": [{"type": "function", "name": "f", "parameters": {}}],
        "tool_choice": "auto",
        "text": {"format": {"type": "json_object"}},
        "store": False,
        "timeoutMs": 5000.0,
    },
    QuickTest: {"prompt": "hi", "stream": False, "model": "codex", "timeoutMs": 1000},
    ExecuteRun: {"prompt": "hi", "cwd": "/srv/work", "model": "gpt-5.5", "timeoutMs": 9},
}
ODD = [
    None,
    True,
    "true",
    "5",
    5,
    5.0,
    5.5,
    -1,
    0,
    10**12,
    "",
    " ",
    "-x",
    [],
    [1],
    {},
    {"type": "x"},
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*path, i))
    return out


def _broken(body: Any) -> Any:
    """Every variant of a valid body with one member replaced by an odd value, or dropped."""
    for where in _paths(body):
        for change in [*ODD, KeyError]:
            copy = msgspec.json.decode(msgspec.json.encode(body))
            parent = copy
            for step in where[:-1]:
                parent = parent[step]
            if change is KeyError:
                if not isinstance(parent, dict):
                    continue
                del parent[where[-1]]
            else:
                parent[where[-1]] = change
            yield copy


@pytest.mark.parametrize("kind", list(VALID), ids=lambda k: k.__name__)
def test_the_document_and_the_decoder_agree(kind: type) -> None:
    """Whatever the document allows decodes, and whatever it refuses is refused: for the valid
    body and each variant with one member broken or dropped (some 1,500 bodies in all)."""
    components = openapi_document()["components"]
    schema = {**components["schemas"][kind.__name__], "components": components}
    validator = jsonschema_rs.Draft202012Validator(schema)
    checked = 0
    for body in [VALID[kind], *_broken(VALID[kind])]:
        documented = validator.is_valid(body)
        try:
            decode(body, kind)
            decoded = True
        except ApiError as exc:
            assert exc.status == 400 and exc.code == "invalid_request" and exc.param
            decoded = False
        assert documented == decoded, body
        checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user"}, {"role": "wizard"}]}, "messages[1].role"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
         "messages[0].content[0].text"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]},
         "tools[0].function.name"),
        ({"stream": "true"}, "stream"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"model": None}, "model"),
        ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
    ],
)  # fmt: skip
def test_a_refusal_names_the_field(body: dict[str, Any], param: str) -> None:
    full = {"model": "codex", "messages": [{"role": "user", "content": "hi"}], **body}
    with pytest.raises(ApiError) as info:
        parse_chat_request(full, CATALOG.resolve)
    err = info.value
    assert (err.status, err.code, err.param) == (400, "invalid_request", param)
    assert f"`{param}`" in err.message


async def test_a_refusal_over_http_is_the_openai_error(client: Any) -> None:
    cookie = await new_portal_user(client, "ada")
    key = await rotate_user_key(client, cookie)
    body = {"model": "codex", "messages": [{"role": "user", "content": "hi"}, {"role": 3}]}
    resp = await call(client, "POST", CHAT, json=body, headers={"Authorization": f"Bearer {key}"})
    err = await assert_openai_error(resp, 400, "invalid_request")
    assert err["param"] == "messages[1].role" and err["type"] == "invalid_request_error"
    resp = await call(client, "POST", "/api/openai/pool/opt-in", cookie, json={"optIn": "true"})
    err = await assert_openai_error(resp, 400, "invalid_request")  # no "true" -> True
    assert err["param"] == "optIn"


def _timeout_parsers(tmp_path: Path, make_settings: Any) -> dict[str, Any]:
    root = tmp_path / "work"
    root.mkdir(exist_ok=True)
    cfg = make_settings(executeAllowedRoots=[str(root)])
    chat = {"model": "codex", "messages": [{"role": "user", "content": "hi"}]}
    return {
        "chat": lambda t: parse_chat_request({**chat, "timeoutMs": t}, CATALOG.resolve).timeout_ms,
        "responses": lambda t: (
            parse_chat_request(
                to_chat_body({"model": "codex", "input": "hi", "timeoutMs": t}), CATALOG.resolve
            ).timeout_ms
        ),
        "quick test": lambda t: (
            parse_quick_request({"prompt": "hi", "timeoutMs": t}, CATALOG.resolve).timeout_ms
        ),
        "execute": lambda t: round(
            parse_execute_request({"prompt": "hi", "cwd": str(root), "timeoutMs": t}, cfg).timeout_s
            * 1000
        ),
    }


@pytest.mark.parametrize("route", ["chat", "responses", "quick test", "execute"])
def test_timeout_ms_is_one_rule_on_every_route(
    tmp_path: Path, make_settings: Any, route: str
) -> None:
    """It was an integer 1-86,400,000 on chat, any positive float on execute and any whole
    number on the quick test."""
    parse = _timeout_parsers(tmp_path, make_settings)[route]
    assert parse(1500) == 1500 and parse(1500.0) == 1500  # JSON Schema's integer
    for bad in (0, -5, 1500.5, 86_400_001, True, "1500", float("nan")):
        with pytest.raises(ApiError) as info:
            parse(bad)
        assert info.value.status == 400 and info.value.param == "timeoutMs", bad


def test_execute_keeps_its_error_codes() -> None:
    for body, code in (
        ({"cwd": "/x"}, "invalid_prompt"),
        ({"prompt": " ", "cwd": "/x"}, "invalid_prompt"),
        ({"prompt": "x"}, "invalid_cwd"),
        ({"prompt": "x", "cwd": "/x", "timeoutMs": -1}, "invalid_timeout"),
        ({"prompt": "x", "cwd": "/x", "model": "-rf"}, "invalid_model"),
        ({"prompt": "x", "cwd": "/x", "stream": "yes"}, "invalid_stream"),
    ):
        with pytest.raises(ApiError) as info:
            decode(body, ExecuteRun, codes=EXECUTE_CODES)
        assert info.value.code == code, body


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=5))
def test_blank_prompts_are_refused_and_others_kept(text: str) -> None:
    body = {"prompt": text}
    if text.strip():
        assert parse_quick_request(body, CATALOG.resolve).prompt == text
    else:
        with pytest.raises(ApiError):
            parse_quick_request(body, CATALOG.resolve)


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search", "search_context_size": "low", "user_location": {"city": "Oslo"}},
        {"type": "custom", "name": "sh", "description": "d", "format": {"type": "grammar"}},
        {"type": "local_shell"},
        {"type": "tool_search", "anything": [1, {"x": None}]},
    ],
)
def test_hosted_and_custom_tools_decode_and_reach_the_translation(tool: dict[str, Any]) -> None:
    """Tool types other than `function` pass the declaration with their own members; what
    becomes of them is the translation's decision (tool_kinds.plan_tools)."""
    body = {"model": "codex", "input": "hi", "tools": [tool], "tool_choice": {"type": tool["type"]}}
    decode(body, ResponsesBody)
    plan = plan_tools(body["tools"])
    chat = to_chat_body(body, plan)
    if tool["type"] == "custom":
        assert plan.custom == {"sh"} and chat["tools"][0]["function"]["name"] == "sh"
    else:
        assert plan.dropped == (tool["type"],) and chat["tools"] == []


@pytest.mark.parametrize("kind", ["", "web search", "x\n", "tool\u00e9", "a" * 65])
def test_a_tool_type_is_a_name(kind: str) -> None:
    """Found by fuzzing the declared body: a hosted tool of type "\\u001b..." was dropped and
    named in the x-codexpool-dropped-tools header, which cannot carry it, and the server
    closed the connection without an answer."""
    body = {"model": "codex", "input": "hi", "tools": [{"type": kind}]}
    with pytest.raises(ApiError) as info:
        to_chat_body(body)
    assert (info.value.status, info.value.param) == (400, "tools[0].type")
