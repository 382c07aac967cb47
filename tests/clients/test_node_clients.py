"""The Node clients (tests/clients/node_modules, pinned in package-lock.json): the official
openai Node SDK and the Vercel AI SDK (`ai` with `@ai-sdk/openai`), each on chat completions
and the Responses API: plain, streamed, multi-turn, a tool round trip and structured output."""

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
    pinned_node,
)

APIS = ["chat", "responses"]


@pytest.fixture(scope="module")
def openai_node(client_server: Any, fake_backend: Any) -> Iterator[ClientRig]:
    node, _ = pinned_node("openai")
    with ClientRig(client_server, fake_backend, [node, str(DRIVERS / "node_openai.mjs")]) as rig:
        yield rig


@pytest.fixture(scope="module")
def vercel(client_server: Any, fake_backend: Any) -> Iterator[ClientRig]:
    node, _ = pinned_node("ai")
    pinned_node("@ai-sdk/openai")
    with ClientRig(client_server, fake_backend, [node, str(DRIVERS / "node_vercel_ai.mjs")]) as rig:
        yield rig


@pytest.fixture(params=["openai_node", "vercel"])
def rig(request: pytest.FixtureRequest) -> ClientRig:
    return request.getfixturevalue(request.param)


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
    assert r["calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]


@pytest.mark.parametrize("api", APIS)
def test_structured_output(rig: ClientRig, api: str) -> None:
    check_structured(rig, api)
