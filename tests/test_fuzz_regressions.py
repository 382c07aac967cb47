"""Regression tests for the bugs the fuzzing found: each was a 500 (or a value the API does
not promise) and is now a clean OpenAI 400. Real app, real SQLite, aiohttp's test client."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from codexpool.errors import ApiError
from codexpool.execute import parse_execute_request

from .users_helpers import (
    admin_login,
    assert_openai_error,
    call,
    new_portal_user,
    rotate_user_key,
)

CHAT = "/api/openai/v1/chat/completions"
RESPONSES = "/api/openai/v1/responses"


@pytest.fixture
async def key(api: Any) -> str:
    """A user key (its account is not linked: valid requests stop at a 403, never at codex)."""
    return await rotate_user_key(api, await new_portal_user(api, "fuzzed"))


@pytest.mark.parametrize("depth", [5_000, 150_000])
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
async def test_deeply_nested_json_is_a_400(api: Any, key: str, depth: int, opener: bytes) -> None:
    """json.loads raises RecursionError past Python's limit; that was an unhandled 500."""
    closer = b"]" if opener == b"[" else b"}"
    body = opener * depth + (b"" if opener == b"[" else b"1") + closer * depth
    for path, headers in (
        (CHAT, {"Authorization": f"Bearer {key}"}),
        ("/api/auth/login", {}),
    ):
        resp = await api.post(
            path, data=io.BytesIO(body), headers={"Content-Type": "application/json", **headers}
        )
        err = await assert_openai_error(resp, 400, "invalid_json")
        assert "nested too deeply" in err["message"]


async def test_tool_call_function_that_is_not_an_object_is_a_400(api: Any, key: str) -> None:
    """The message parser called `.get` on a tool call's `function` whatever its type (500)."""
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": "f"}]},
        {"role": "user", "content": "and?"},
    ]
    resp = await call(
        api,
        "POST",
        CHAT,
        json={"model": "codex", "messages": messages},
        headers={"Authorization": f"Bearer {key}"},
    )
    err = await assert_openai_error(resp, 400, "invalid_request")
    assert err["param"] == "messages[1].tool_calls[0].function"


@pytest.mark.parametrize("name", [["a"], {"n": 1}, 3, None])
async def test_tool_choice_with_a_non_string_name_is_a_400(api: Any, key: str, name: Any) -> None:
    """`name not in names` with an unhashable name raised TypeError (500), in both APIs."""
    auth = {"Authorization": f"Bearer {key}"}
    chat = {
        "model": "codex",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "a"}}],
        "tool_choice": {"type": "function", "function": {"name": name}},
    }
    err = await assert_openai_error(
        await call(api, "POST", CHAT, json=chat, headers=auth), 400, "invalid_request"
    )
    assert err["param"] == "tool_choice.function.name"  # the field itself (bodies.py)
    responses = {
        "model": "codex",
        "input": "hi",
        "tools": [{"type": "function", "name": "a"}],
        "tool_choice": {"type": "function", "name": name},
    }
    err = await assert_openai_error(
        await call(api, "POST", RESPONSES, json=responses, headers=auth), 400, "invalid_request"
    )
    assert err["param"] == "tool_choice.name"


async def test_valid_tool_choice_still_reaches_the_account_check(api: Any, key: str) -> None:
    """The fix refuses only bad names: a known function name passes validation."""
    chat = {
        "model": "codex",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "a"}}],
        "tool_choice": {"type": "function", "function": {"name": "a"}},
    }
    resp = await call(api, "POST", CHAT, json=chat, headers={"Authorization": f"Bearer {key}"})
    await assert_openai_error(resp, 403, "account_not_linked")


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity"])
async def test_execute_refuses_non_finite_timeouts(
    aiohttp_client: Any, make_settings: Any, tmp_path: Path, raw: bytes
) -> None:
    """JSON's NaN passed the `timeoutMs <= 0` check and became the run's deadline."""
    from codexpool.app import create_app

    root = tmp_path / "root"
    root.mkdir()
    settings = make_settings(executeEnabled=True, executeAllowedRoots=[str(root)])
    body = b'{"prompt": "x", "cwd": "%s", "timeoutMs": %s}' % (str(root).encode(), raw)
    api = await aiohttp_client(create_app(settings))
    key = await rotate_user_key(api, await new_portal_user(api, "runner"))
    resp = await api.post(
        "/api/openai/v1/codex/execute",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    err = await assert_openai_error(resp, 400, "invalid_timeout")
    assert err["param"] == "timeoutMs"
    with pytest.raises(ApiError):
        parse_execute_request(
            {"prompt": "x", "cwd": str(root), "timeoutMs": float("nan")}, settings
        )


async def test_admin_usage_still_answers_after_the_fixes(api: Any) -> None:
    """A plain request to each touched query route still works (fixes refuse only bad input)."""
    admin = await admin_login(api)
    for path in ("/api/admin/usage?days=366", "/api/admin/audit?limit=1000"):
        assert (await call(api, "GET", path, admin)).status == 200


@pytest.mark.parametrize("name", ["get weather", "é", "a.b", "x" * 65, ""])
async def test_tool_names_codex_would_refuse_are_a_400(api: Any, key: str, name: str) -> None:
    """Found by the linked-account fuzz: Codex refuses a dynamic tool whose name is not
    `^[a-zA-Z0-9_-]+$` mid-turn, which came back as a 502 `upstream_error`; the gateway now
    refuses it up front, as OpenAI does, naming the field."""
    auth = {"Authorization": f"Bearer {key}"}
    chat = {
        "model": "codex",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": name}}],
    }
    resp = await call(api, "POST", CHAT, json=chat, headers=auth)
    err = await assert_openai_error(resp, 400, "invalid_request")
    assert err["param"] == "tools[0].function.name"
    responses = {"model": "codex", "input": "hi", "tools": [{"type": "function", "name": name}]}
    resp = await call(api, "POST", RESPONSES, json=responses, headers=auth)
    err = await assert_openai_error(resp, 400, "invalid_request")
    assert err["param"] == "tools[0].function.name"


async def test_tool_names_openai_allows_still_pass(api: Any, key: str) -> None:
    chat = {
        "model": "codex",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "get_Weather-2" + "x" * 51}}],
    }
    resp = await call(api, "POST", CHAT, json=chat, headers={"Authorization": f"Bearer {key}"})
    await assert_openai_error(resp, 403, "account_not_linked")  # past validation


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (CHAT, "max_tokens"),
        (CHAT, "timeoutMs"),
        ("/api/openai/codex/execute-session", "timeoutMs"),
    ],
)
async def test_whole_numbers_written_as_floats_count_as_integers(
    api: Any, key: str, path: str, field: str
) -> None:
    """Found by fuzzing against the document: JSON Schema's `integer` includes 528.0 (and
    some encoders write whole numbers so), but the handlers refused it with a 400."""
    auth = {"Authorization": f"Bearer {key}"}
    base: dict[str, Any] = (
        {"model": "codex", "messages": [{"role": "user", "content": "hi"}]}
        if path == CHAT
        else {"prompt": "hi"}
    )
    resp = await call(api, "POST", path, json={**base, field: 528.0}, headers=auth)
    await assert_openai_error(resp, 403, "account_not_linked")  # past validation
    for bad in (528.5, float("inf"), True, "528"):
        body = {**base, field: bad}
        resp = await call(api, "POST", path, data=json.dumps(body), headers=auth)  # Infinity too
        err = await assert_openai_error(resp, 400, None)
        assert err["param"] == field


@pytest.mark.parametrize(
    "body, param",
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {"n": {"maximum": 1657292474913232174681423872}}
            }}}]},
            "tools[0].function.parameters",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "integer", "enum": [-(2**70)]
            }}}},
            "response_format.json_schema.schema",
        ),
    ],
)  # fmt: skip
async def test_integers_codex_cannot_read_are_a_400(
    api: Any, key: str, body: dict, param: str
) -> None:
    """An integer beyond 64 bits in a schema made Codex refuse the turn (a 502 from upstream,
    found by the linked-account fuzz); now the gateway says which field."""
    payload = {"model": "codex", "messages": [{"role": "user", "content": "hi"}], **body}
    resp = await call(api, "POST", CHAT, headers={"Authorization": f"Bearer {key}"}, json=payload)
    err = await assert_openai_error(resp, 400, "invalid_request")
    assert err["param"] == param and "64 bits" in err["message"]
    big_float = json.loads(json.dumps(payload).replace("1657292474913232174681423872", "1.6e27"))
    resp = await call(api, "POST", CHAT, headers={"Authorization": f"Bearer {key}"}, json=big_float)
    assert resp.status != 400 or param != "tools[0].function.parameters"
