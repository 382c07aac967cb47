"""LangChain's ChatOpenAI (langchain-openai, its own pinned venv) on chat completions and with
use_responses_api: invoke, stream, multi-turn messages, bound tools (invoked and streamed) and
with_structured_output(method="json_schema")."""

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
    weather_call,
)

APIS = ["chat", "responses"]


@pytest.fixture(scope="module")
def rig(client_server: Any, fake_backend: Any) -> Iterator[ClientRig]:
    python, _ = pinned_python("langchain", "langchain-openai")
    with ClientRig(client_server, fake_backend, [python, str(DRIVERS / "py_langchain.py")]) as rig:
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
    assert r["calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]


@pytest.mark.parametrize("api", APIS)
def test_streamed_tool_call(rig: ClientRig, api: str) -> None:
    r = ok(rig.run(f"{api}.stream_tools", weather_call()))
    assert r["calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]


@pytest.mark.parametrize("api", APIS)
def test_structured_output(rig: ClientRig, api: str) -> None:
    check_structured(rig, api)
