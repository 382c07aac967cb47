"""pydantic-ai (pydantic-ai-slim[openai], its own pinned venv) with OpenAIChatModel and
OpenAIResponsesModel: run, run_stream, message_history, a tool round trip, NativeOutput (the
schema as response format) and the default tool output (a forced final_result call)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .rig import (
    DRIVERS,
    PARSED,
    STRUCTURED,
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
    python, _ = pinned_python("pydantic_ai", "pydantic-ai-slim")
    command = [python, str(DRIVERS / "py_pydantic_ai.py")]
    with ClientRig(client_server, fake_backend, command) as rig:
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
    assert "tool-call" in r["parts"] and "tool-return" in r["parts"]


@pytest.mark.parametrize("api", APIS)
def test_native_structured_output(rig: ClientRig, api: str) -> None:
    check_structured(rig, api)


@pytest.mark.parametrize("api", APIS)
def test_tool_structured_output(rig: ClientRig, api: str) -> None:
    """pydantic-ai's default output: the model must call its final_result function, which
    tool_choice required enforces."""
    mark = len(rig.backend_bodies())
    r = ok(rig.run(f"{api}.structured_tool", weather_call("final_result", STRUCTURED)))
    assert r["parsed"] == PARSED
    tools = [t.get("name") for t in rig.backend_bodies(mark)[0]["tools"]]
    assert "final_result" in tools
