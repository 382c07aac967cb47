"""The OpenAI Agents SDK (openai-agents, its own pinned venv) with its Responses model and its
chat completions model: run, streamed run, multi-turn input lists, a function tool round trip
and a typed output_type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .rig import (
    DRIVERS,
    ClientRig,
    check_multi_turn,
    check_plain,
    check_stream,
    check_structured,
    check_tools,
    ok,
    pinned_python,
)

APIS = ["chat", "responses"]


@pytest.fixture(scope="module")
def rig(client_server: Any, fake_backend: Any) -> Iterator[ClientRig]:
    python, _ = pinned_python("agents", "openai-agents")
    with ClientRig(client_server, fake_backend, [python, str(DRIVERS / "py_agents.py")]) as rig:
        yield rig


@pytest.mark.parametrize("api", APIS)
def test_plain(rig: ClientRig, api: str) -> None:
    check_plain(rig, api)


@pytest.mark.parametrize("api", APIS)
def test_stream(rig: ClientRig, api: str) -> None:
    check_stream(rig, api)


@pytest.mark.parametrize("api", APIS)
def test_multi_turn(rig: ClientRig, api: str) -> None:
    check_multi_turn(rig, api)


@pytest.mark.parametrize("api", APIS)
def test_tool_round_trip(rig: ClientRig, api: str) -> None:
    r = check_tools(rig, api)
    assert r["items"] == ["tool_call_item", "tool_call_output_item", "message_output_item"]


@pytest.mark.parametrize("api", APIS)
def test_structured_output(rig: ClientRig, api: str) -> None:
    check_structured(rig, api)


def test_multi_turn_sends_back_the_reasoning_item(rig: ClientRig) -> None:
    """The Responses model replays the whole first answer, its reasoning item included: the
    gateway takes it (the summary is Codex's own, not the client's to inject) instead of a 400."""
    first = rig.backend.reply("Hi Ada.", reasoning=["Greeting."])
    r = ok(rig.run("responses.multi_turn", first, rig.backend.reply("Ada.")))
    assert r["texts"] == ["Hi Ada.", "Ada."]
