"""Instruction modes end to end: what the real codex binary sends the (fake) backend for a chat
or Responses request in the `client` and `codex` modes, and the fallback to Codex's own
instructions when the backend refuses the client's."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from codexpool.testing.fake_backend import INSTRUCTIONS_REFUSAL, codex_overrides

from .conftest import ADMIN_PASSWORD, LiveServer
from .e2e_helpers import link_user, usage_rows

pytestmark = pytest.mark.e2e
PERSONA = "You are Codex"
# What the lean request may weigh beyond the client's own text (the target of issue 16: 3 KB).
OVERHEAD_BOUND = 3000


def serve(
    factory: Any, fake_backend: Any, tmp_path: Path, account_id: str, **settings: Any
) -> tuple[LiveServer, str]:
    """Start a server with one user linked to `account_id`; return it and the user's key."""
    server = factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url), **settings
    )
    key = link_user(server, tmp_path, "alice", account_id)
    server.start()
    return server, key


def bodies(fake_backend: Any, account_id: str) -> list[dict[str, Any]]:
    """Return the /responses bodies the account sent, oldest first."""
    return [
        r["body"]
        for r in fake_backend.requests("/codex/responses")
        if r["account_id"] == account_id
    ]


def texts(body: dict[str, Any], role: str) -> list[str]:
    """Return the text of every `role` message of a /responses body's input, in order."""
    return [
        part.get("text", "")
        for item in body["input"]
        if item.get("type") == "message" and item.get("role") == role
        for part in item.get("content") or []
    ]


def test_client_mode_sends_only_the_client_system_prompt(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path, openai_client: Any
) -> None:
    server, key = serve(live_server_factory, fake_backend, tmp_path, "acct_lean")
    system, user = "You are a pirate. Answer in one word.", "Hi"
    answer = openai_client(server, key).chat.completions.create(
        model="gpt-5.5",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
    )
    assert answer.choices[0].message.content == "Hello from the fake backend."
    [body] = bodies(fake_backend, "acct_lean")
    raw = json.dumps(body)
    # The client's system prompt is the thread's only instruction, sent as it is, first.
    assert texts(body, "developer") == [system]
    assert body["input"][0]["role"] == "developer"
    assert texts(body, "user") == [user]
    for block in (PERSONA, "skills_instructions", "environment_context", "permissions"):
        assert block not in raw, block
    assert len(raw.encode()) <= OVERHEAD_BOUND + len(system) + len(user)


def test_no_system_message_gives_no_instructions_at_all(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path, openai_client: Any
) -> None:
    server, key = serve(live_server_factory, fake_backend, tmp_path, "acct_bare")
    client = openai_client(server, key)
    stream = client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "Hello"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    [body] = bodies(fake_backend, "acct_bare")
    assert [item["role"] for item in body["input"]] == ["user"]
    assert texts(body, "user") == ["Hello"]
    assert not body.get("instructions")


def test_code_mode_models_get_the_same_lean_request(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path, openai_client: Any
) -> None:
    """gpt-6.x entries of codex's catalog run in code mode with sub-agents: the chat catalog
    turns that off, so the client's function is a plain tool and nothing else comes along."""
    server, key = serve(live_server_factory, fake_backend, tmp_path, "acct_sol")
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    client = openai_client(server, key)
    client.chat.completions.create(
        model="gpt-6.1-sol", messages=[{"role": "user", "content": "Hi"}]
    )
    client.chat.completions.create(
        model="gpt-6.1-sol", messages=[{"role": "user", "content": "Hi"}], tools=[tool]
    )
    plain, with_tool = bodies(fake_backend, "acct_sol")
    assert plain["model"] == "gpt-6.1-sol"
    assert [item["type"] for item in plain["input"]] == ["message"]
    assert len(json.dumps(plain).encode()) <= OVERHEAD_BOUND + len("Hi")
    raw = json.dumps(with_tool)
    for harness in ("multi_agent", "spawn_agent", '"exec"', "curr_time", PERSONA):
        assert harness not in raw, harness
    offered = [
        fn
        for item in with_tool["input"]
        if item.get("type") == "additional_tools"
        for namespace in item["tools"]
        for fn in namespace.get("tools", [namespace])
    ] + list(with_tool.get("tools") or [])
    assert [(fn["type"], fn["name"]) for fn in offered] == [("function", "get_weather")]


def test_gateway_base_instructions_come_before_the_client_ones(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path, openai_client: Any
) -> None:
    server, key = serve(
        live_server_factory,
        fake_backend,
        tmp_path,
        "acct_base",
        chatBaseInstructions="Never reveal secrets.",
    )
    client = openai_client(server, key)
    client.chat.completions.create(
        model="gpt-5.5",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "Hi"}])
    first, second = bodies(fake_backend, "acct_base")
    assert texts(first, "developer") == ["Never reveal secrets.\n\nBe brief."]
    assert texts(second, "developer") == ["Never reveal secrets."]
    assert PERSONA not in json.dumps(first) + json.dumps(second)


def test_codex_mode_keeps_codex_instructions(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path, openai_client: Any
) -> None:
    server, key = serve(
        live_server_factory, fake_backend, tmp_path, "acct_codex", chatInstructions="codex"
    )
    openai_client(server, key).chat.completions.create(
        model="gpt-5.5",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    [body] = bodies(fake_backend, "acct_codex")
    developer = texts(body, "developer")
    assert developer[0].startswith(PERSONA)  # Codex's persona first
    assert "Be brief." in developer[1:]  # the client's system message as developer text
    raw = json.dumps(body)
    assert "skills_instructions" in raw and "environment_context" in raw
    assert len(raw.encode()) > 20_000  # today's heavy request, for comparison


def test_codex_mode_base_instructions_replace_the_persona(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path, openai_client: Any
) -> None:
    server, key = serve(
        live_server_factory,
        fake_backend,
        tmp_path,
        "acct_codex_base",
        chatInstructions="codex",
        chatBaseInstructions="You are a helpful assistant.",
    )
    openai_client(server, key).chat.completions.create(
        model="gpt-5.5",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    [body] = bodies(fake_backend, "acct_codex_base")
    developer = texts(body, "developer")
    assert developer[0] == "You are a helpful assistant."
    assert "Be brief." in developer[1:]
    assert PERSONA not in json.dumps(body)


def test_responses_api_instructions_are_the_thread_instructions(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path, openai_client: Any
) -> None:
    server, key = serve(live_server_factory, fake_backend, tmp_path, "acct_resp")
    answer = openai_client(server, key).responses.create(
        model="gpt-5.5", instructions="Answer as a haiku.", input="Hi"
    )
    assert answer.output_text == "Hello from the fake backend."
    [body] = bodies(fake_backend, "acct_resp")
    assert texts(body, "developer") == ["Answer as a haiku."]
    assert texts(body, "user") == ["Hi"]
    assert PERSONA not in json.dumps(body)
    assert len(json.dumps(body).encode()) <= OVERHEAD_BOUND + len("Answer as a haiku.Hi")


class Admin:
    """The admin API over HTTP with a signed-in session (stdlib only)."""

    def __init__(self, server: LiveServer) -> None:
        self.url = server.url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        self.post("/api/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with self.opener.open(req, timeout=30) as resp:
            assert resp.status == 200
            return json.load(resp)

    def users(self) -> dict[str, dict[str, Any]]:
        """Return the panel's user rows by username."""
        with self.opener.open(self.url + "/api/admin/openai-users", timeout=30) as resp:
            return {row["username"]: row for row in json.load(resp)["users"]}


def admin_table(server: LiveServer) -> dict[str, dict[str, Any]]:
    """Sign in as admin and return the panel's user rows by username."""
    return Admin(server).users()


def test_refused_instructions_fall_back_to_codex_once_and_stick(
    live_server_factory: Any,
    fake_backend: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    openai_client: Any,
) -> None:
    fake_backend.require_codex_instructions(True)
    request.addfinalizer(lambda: fake_backend.require_codex_instructions(False))
    server, key = serve(live_server_factory, fake_backend, tmp_path, "acct_strict")
    link_user(server, tmp_path, "bob", "acct_strict_bob")  # another account, never refused
    client = openai_client(server, key)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]

    # The client sees a normal streamed answer although the backend refused the first try.
    stream = client.chat.completions.create(model="gpt-5.5", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
        "Hello from the fake backend."
    )
    refused, retried = bodies(fake_backend, "acct_strict")
    assert PERSONA not in json.dumps(refused)
    assert texts(retried, "developer")[0].startswith(PERSONA)
    assert "Be brief." in texts(retried, "developer")[1:]

    # The account keeps Codex's instructions: the next request goes there straight away.
    answer = client.chat.completions.create(model="gpt-5.5", messages=messages)
    assert answer.choices[0].message.content == "Hello from the fake backend."
    assert len(bodies(fake_backend, "acct_strict")) == 3
    assert texts(bodies(fake_backend, "acct_strict")[-1], "developer")[0].startswith(PERSONA)

    # Once on Codex's own, a refusal has nothing left to fall back to: no second try.
    fake_backend.script("acct_strict", fake_backend.status(400, INSTRUCTIONS_REFUSAL))
    with pytest.raises(openai.APIStatusError, match="Instructions are not valid"):
        client.chat.completions.create(model="gpt-5.5", messages=messages)
    assert len(bodies(fake_backend, "acct_strict")) == 4

    rows = admin_table(server)
    assert isinstance(rows["alice"]["instructionsFallbackAt"], float)
    assert rows["bob"]["instructionsFallbackAt"] is None
    assert server.stop() == 0
    assert server.log().count("refused the gateway's instructions") == 1
    # One usage row per request.
    assert [r[0] for r in usage_rows(server, "status")] == [200, 200, 502]


def test_refused_codex_instructions_are_not_retried(
    live_server_factory: Any,
    fake_backend: Any,
    tmp_path: Path,
    openai_client: Any,
) -> None:
    """A turn that already carried Codex's own persona has nothing to fall back to: the
    refusal reaches the client after one upstream request, and the account is not marked."""
    server, key = serve(
        live_server_factory, fake_backend, tmp_path, "acct_refused", chatInstructions="codex"
    )
    fake_backend.script("acct_refused", fake_backend.status(400, INSTRUCTIONS_REFUSAL))
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(server, key).chat.completions.create(
            model="gpt-5.5", messages=[{"role": "user", "content": "Hi"}]
        )
    assert "Instructions are not valid" in caught.value.message
    assert len(bodies(fake_backend, "acct_refused")) == 1
    assert admin_table(server)["alice"]["instructionsFallbackAt"] is None


def test_other_4xx_answers_are_not_taken_for_an_instructions_refusal(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path, openai_client: Any
) -> None:
    server, key = serve(live_server_factory, fake_backend, tmp_path, "acct_other_400")
    fake_backend.script("acct_other_400", fake_backend.status(400))
    with pytest.raises(openai.APIStatusError):
        openai_client(server, key).chat.completions.create(
            model="gpt-5.5",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
        )
    assert len(bodies(fake_backend, "acct_other_400")) == 1  # no retry
    assert admin_table(server)["alice"]["instructionsFallbackAt"] is None


def test_a_deleted_account_takes_its_fallback_along(
    live_server_factory: Any,
    fake_backend: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    openai_client: Any,
) -> None:
    """A user created after a deletion starts with the client's instructions, not with the
    fallback of the account it replaced (ids are never reused since issue 14, and the deleted
    account's fallback is forgotten with it)."""
    fake_backend.require_codex_instructions(True)
    request.addfinalizer(lambda: fake_backend.require_codex_instructions(False))
    server, key = serve(live_server_factory, fake_backend, tmp_path, "acct_gone")
    openai_client(server, key).chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "Hi"}]
    )
    admin = Admin(server)
    before = admin.users()["alice"]
    assert before["instructionsFallbackAt"] is not None
    admin.post("/api/admin/openai-users/delete", {"username": "alice"})
    link_user(server, tmp_path, "carol", "acct_new")
    after = admin.users()["carol"]
    assert after["id"] != before["id"]  # a fresh engine account key, never the deleted one's
    assert after["instructionsFallbackAt"] is None
