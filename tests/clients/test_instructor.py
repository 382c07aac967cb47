"""instructor (its own pinned venv): a plain completion, structured output through a forced
tool call (TOOLS), through a JSON schema (JSON_SCHEMA), streamed partial objects, multi-turn
history and the Responses API (RESPONSES_TOOLS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .rig import (
    DRIVERS,
    PARSED,
    STRUCTURED,
    ClientRig,
    check_plain,
    check_structured,
    ok,
    pinned_python,
    weather_call,
)


@pytest.fixture(scope="module")
def rig(client_server: Any, fake_backend: Any) -> Iterator[ClientRig]:
    python, _ = pinned_python("instructor", "instructor")
    command = [python, str(DRIVERS / "py_instructor.py")]
    with ClientRig(client_server, fake_backend, command) as rig:
        yield rig


def test_plain(rig: ClientRig) -> None:
    check_plain(rig, "chat")


@pytest.mark.parametrize("scenario", ["chat.tools", "chat.multi_turn", "responses.tools"])
def test_structured_output_through_a_forced_tool_call(rig: ClientRig, scenario: str) -> None:
    mark = len(rig.backend_bodies())
    r = ok(rig.run(scenario, weather_call("Weather", STRUCTURED)))
    assert r["parsed"] == PARSED
    body = rig.backend_bodies(mark)[0]
    assert [t.get("name") for t in body["tools"]] == ["Weather"]
    if scenario == "chat.multi_turn":
        assert "Paris is mild today." in str(body["input"])


def test_structured_output_through_json_schema(rig: ClientRig) -> None:
    check_structured(rig, "chat")


def test_streamed_partial_objects(rig: ClientRig) -> None:
    # create_partial declares the model's Partial twin as the function to call.
    r = ok(rig.run("chat.stream", weather_call("PartialWeather", STRUCTURED)))
    assert r["parsed"] == PARSED
