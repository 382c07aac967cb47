"""Chat completions end to end: the official openai SDK -> the real server -> the real codex
app-server -> the fake ChatGPT backend, plus the bad-input matrix and failure paths."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from codexpool.testing.fake_backend import codex_overrides
from tests.conftest import LiveServer, async_openai
from tests.e2e_helpers import link_user, usage_rows

pytestmark = pytest.mark.e2e


def post(server: LiveServer, path: str, body: bytes | dict, headers: dict | None = None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        server.url + path,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def assert_openai_error(status: int, raw: bytes, want_status: int, code: str | None) -> dict:
    """Check the OpenAI error contract: status, JSON body, message, type and code."""
    assert status == want_status, raw
    body = json.loads(raw)
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert "param" in err
    if code is not None:
        assert err["code"] == code, err
    assert "Traceback" not in raw.decode()
    return err


def test_no_linked_accounts(live_server_factory: Any, codex_bin: str, openai_client: Any) -> None:
    server = live_server_factory(start=False, metricsToken="t" * 32)
    master = server.cli("key", "rotate", "--master").stdout.strip()
    server.start()
    health_request = urllib.request.Request(
        server.url + "/api/health", headers={"Authorization": "Bearer " + "t" * 32}
    )  # the account counts are for the operator (metrics token or admin session) only
    with urllib.request.urlopen(health_request, timeout=10) as resp:
        health = json.loads(resp.read())
    assert health["ready"] is True and health["accounts"] == {"linked": 0, "eligible": 0}
    client = openai_client(server, master)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="codex", messages=[{"role": "user", "content": "hello"}]
        )
    assert info.value.status_code == 503
    assert info.value.body["code"] == "no_linked_accounts"
    assert "link" in info.value.body["message"].lower()
    assert info.value.response.headers["x-codexpool-error-source"] == "gateway"


def test_sdk_stream_and_usage(linked: Any, fake_backend: Any, openai_client: Any) -> None:
    server, key = linked
    fake_backend.script("acct_alice", fake_backend.reply("One two three four five six", chunks=6))
    client = openai_client(server, key)
    stream = client.chat.completions.create(
        model="gpt-5.5",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == "One two three four five six"
    assert len(pieces) >= 3  # really streamed, not one blob
    assert finish == "stop"
    assert usage is not None and usage.prompt_tokens == 11 and usage.completion_tokens >= 1
    # The client's system message reached the model as developer instructions.
    body = fake_backend.requests("/codex/responses")[-1]["body"]
    assert "Be brief." in json.dumps(body)
    assert body.get("tools", []) == []  # a plain chat offers the model no tools at all


def test_deltas_reach_the_client_as_they_arrive(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    """The stream buffers encoded chunks only until the engine has nothing more queued: with
    the backend spacing three deltas 300 ms apart, each reaches the SDK about 300 ms after the
    one before it, not all at the end."""
    server, key = linked
    fake_backend.script(
        "acct_alice", fake_backend.reply("one two three", chunks=3, delay_between_ms=300)
    )
    client = openai_client(server, key)
    stream = client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "Count"}], stream=True
    )
    arrivals = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
    assert "".join(text for _, text in arrivals) == "one two three"
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == 2 and all(gap > 0.2 for gap in gaps), gaps


def test_streams_and_errors_echo_the_request_id(linked: Any) -> None:
    """x-request-id comes back on every answer, streams included (their headers leave before
    the middleware sees the response), so a client can quote it when reporting a problem."""
    server, key = linked
    path = "/api/openai/v1/chat/completions"
    body = {"model": "codex", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    auth = {"Authorization": f"Bearer {key}"}
    status, headers, raw = post(server, path, body, {**auth, "x-request-id": "trace-42"})
    assert status == 200 and b"data: [DONE]" in raw
    assert {k.lower(): v for k, v in headers.items()}["x-request-id"] == "trace-42"
    status, headers, _ = post(server, path, {**body, "stream": False}, auth)
    assert status == 200 and len({k.lower(): v for k, v in headers.items()}["x-request-id"]) == 32
    status, headers, _ = post(server, path, {"model": 5}, {**auth, "x-request-id": "bad-1"})
    assert status == 400 and {k.lower(): v for k, v in headers.items()}["x-request-id"] == "bad-1"


def test_sdk_non_stream_sync_and_async(linked: Any, fake_backend: Any, openai_client: Any) -> None:
    server, key = linked
    fake_backend.script("acct_alice", fake_backend.reply("Plain answer"))
    client = openai_client(server, key)
    done = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "hi"}], reasoning_effort="low"
    )
    assert done.choices[0].message.content == "Plain answer"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens

    async def run_async() -> list[str]:
        aclient = async_openai(server, key)
        async with aclient:
            answers = await asyncio.gather(
                *(
                    aclient.chat.completions.create(
                        model="codex", messages=[{"role": "user", "content": f"q{i}"}]
                    )
                    for i in range(4)
                )
            )
            stream = await aclient.chat.completions.create(
                model="codex", messages=[{"role": "user", "content": "s"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        return [a.choices[0].message.content for a in answers] + [text]

    results = asyncio.run(run_async())
    assert all(r == "Hello from the fake backend." for r in results), results
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert "codex" in ids and "gpt-5.5" in ids


def test_bad_input_matrix(linked: Any) -> None:
    server, key = linked
    auth = {"Authorization": f"Bearer {key}"}
    path = "/api/openai/v1/chat/completions"
    ok_messages = [{"role": "user", "content": "hi"}]
    cases: list[tuple[bytes | dict, dict, int, str | None]] = [
        (b"{not json", auth, 400, "invalid_json"),
        (b"[1, 2]", auth, 400, "invalid_json"),
        ({"model": "codex", "messages": []}, auth, 400, None),
        ({"model": "codex", "messages": "hi"}, auth, 400, None),
        ({"model": 42, "messages": ok_messages}, auth, 400, None),
        ({"model": "codex", "messages": ok_messages, "stream": "yes"}, auth, 400, None),
        ({"model": "no-such-model", "messages": ok_messages}, auth, 404, "model_not_found"),
        ({"model": "codex", "messages": ok_messages}, {}, 401, "missing_api_key"),
        (
            {"model": "codex", "messages": ok_messages},
            {"Authorization": "Bearer sk-nope"},
            401,
            "invalid_api_key",
        ),
        (
            {"model": "codex", "messages": ok_messages},
            {"x-api-key": "sk-nope"},
            401,
            "invalid_api_key",
        ),
        (b"x" * (9 * 1024 * 1024), auth, 413, "request_too_large"),
    ]
    for body, headers, want, code in cases:
        status, resp_headers, raw = post(server, path, body, headers)
        assert_openai_error(status, raw, want, code)
        assert resp_headers.get("x-codexpool-error-source") == "gateway"
    # x-api-key works like Bearer; a rotated (revoked) key stops at once.
    status, _, _ = post(
        server, path, {"model": "codex", "messages": ok_messages}, {"x-api-key": key}
    )
    assert status == 200
    server.cli("key", "rotate", "alice")
    status, _, raw = post(server, path, {"model": "codex", "messages": ok_messages}, auth)
    assert_openai_error(status, raw, 401, "invalid_api_key")
    # Unknown route and wrong method are OpenAI-shaped too.
    status, _, raw = post(server, "/api/openai/v1/nope", {}, auth)
    assert_openai_error(status, raw, 404, "not_found")


def test_usage_limit_and_upstream_errors(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    server, key = linked
    client = openai_client(server, key)
    fake_backend.script("acct_alice", fake_backend.status(500))
    with pytest.raises(openai.APIStatusError) as info2:
        list(
            client.chat.completions.create(
                model="codex", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    assert info2.value.status_code == 502
    assert info2.value.body["code"] == "upstream_error"
    assert info2.value.response.headers["x-codexpool-error-source"] == "upstream"
    resets = int(time.time()) + 1800
    fake_backend.script("acct_alice", fake_backend.usage_limit(resets))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="codex", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "usage_limit_reached"
    assert info.value.response.headers["x-codexpool-error-source"] == "upstream"
    assert 0 < int(info.value.response.headers["retry-after"]) <= 1800
    # Now the gateway knows: the account is refused up front with its own reset time.
    with pytest.raises(openai.RateLimitError) as info3:
        client.chat.completions.create(model="codex", messages=[{"role": "user", "content": "x"}])
    assert info3.value.body["code"] == "account_exhausted"
    assert str(resets) in info3.value.body["message"]
    assert info3.value.response.headers["x-codexpool-error-source"] == "gateway"
    assert 1790 <= int(info3.value.response.headers["retry-after"]) <= 1800


def test_deadline_gives_timeout(linked: Any, fake_backend: Any, openai_client: Any) -> None:
    server, key = linked
    fake_backend.script("acct_alice", fake_backend.hang())
    t0 = time.monotonic()
    status, headers, raw = post(
        server,
        "/api/openai/v1/chat/completions",
        {"model": "codex", "messages": [{"role": "user", "content": "x"}], "timeoutMs": 1500},
        {"Authorization": f"Bearer {key}"},
    )
    assert time.monotonic() - t0 < 15
    assert_openai_error(status, raw, 504, "timeout")
    # Under load codex may not have asked the backend yet when the deadline struck: the unused
    # hang would then catch the next request. Drop it.
    fake_backend.clear_script("acct_alice")
    # The account still serves the next request.
    client = openai_client(server, key)
    done = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "y"}]
    )
    assert done.choices[0].message.content


def test_client_disconnect_interrupts_turn(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    server, key = linked
    fake_backend.script(
        "acct_alice", fake_backend.reply("a b c d e f g h i j", chunks=10, delay_between_ms=500)
    )
    client = openai_client(server, key)
    stream = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "long"}], stream=True
    )
    got = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got += 1
            if got == 2:
                break
    stream.close()  # the client goes away mid-answer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if fake_backend.closed_streams() >= 1 and any(r[0] == 499 for r in usage_rows(server)):
            break
        time.sleep(0.1)
    assert fake_backend.closed_streams() >= 1  # codex stopped reading the upstream answer
    assert any(r[0] == 499 for r in usage_rows(server))
    done = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "y"}]
    )
    assert done.choices[0].message.content


def _codex_pids(server: LiveServer) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith("codex"):
                continue
            if str(server.settings.data_path).encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_app_server_killed_mid_stream(linked: Any, fake_backend: Any, openai_client: Any) -> None:
    server, key = linked
    client = openai_client(server, key)
    client.chat.completions.create(model="codex", messages=[{"role": "user", "content": "warm"}])
    fake_backend.script(
        "acct_alice", fake_backend.reply("a b c d e f g h", chunks=8, delay_between_ms=400)
    )
    stream = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                for pid in _codex_pids(server):
                    os.kill(pid, signal.SIGKILL)
    assert "codex" in str(info.value).lower()
    done = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "y"}]
    )
    assert done.choices[0].message.content == "Hello from the fake backend."


def test_usage_rows_match_requests(linked: Any, openai_client: Any) -> None:
    server, key = linked
    client = openai_client(server, key)
    for i in range(3):
        client.chat.completions.create(
            model="codex", messages=[{"role": "user", "content": str(i)}]
        )
    list(
        client.chat.completions.create(
            model="codex", messages=[{"role": "user", "content": "s"}], stream=True
        )
    )
    assert server.stop() == 0  # graceful stop drains the usage writer
    rows = usage_rows(server)
    assert rows == [(200, None, 0)] * 3 + [(200, None, 1)]


def test_json_schema_answer_reaches_codex_as_output_schema(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    server, key = linked
    fake_backend.script("acct_alice", fake_backend.reply('{"answer": 4}', chunks=3))
    client = openai_client(server, key)
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    done = client.chat.completions.create(
        model="codex",
        messages=[{"role": "user", "content": "2+2?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}},
    )
    assert json.loads(done.choices[0].message.content) == {"answer": 4}
    body = fake_backend.requests("/codex/responses")[-1]["body"]
    # Codex forwards the schema as the Responses API's structured-output format.
    assert body["text"]["format"]["schema"]["properties"] == schema["properties"]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _function_call(call_id: str = "call_w1") -> dict:
    return {
        "kind": "function_call",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "call_id": call_id,
    }


@pytest.mark.parametrize("stream", [False, True])
def test_sdk_tool_calling_loop_resumes_the_held_turn(
    linked: Any, fake_backend: Any, stream: bool, openai_client: Any
) -> None:
    server, key = linked
    fake_backend.script(
        "acct_alice", _function_call(), fake_backend.reply("It is 18C and sunny in Paris.")
    )
    client = openai_client(server, key)
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="codex", messages=messages, tools=[WEATHER_TOOL], stream=True
            )
        )
        calls: dict[int, dict] = {}
        finish = None
        for chunk in chunks:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function and tc.function.name:
                        slot["name"] = tc.function.name
                    if tc.function and tc.function.arguments:
                        slot["arguments"] += tc.function.arguments
        assert finish == "tool_calls"
        call = calls[0]
    else:
        first = client.chat.completions.create(
            model="codex", messages=messages, tools=[WEATHER_TOOL]
        )
        assert first.choices[0].finish_reason == "tool_calls"
        tc = first.choices[0].message.tool_calls[0]
        call = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
    assert call["id"] == "call_w1" and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    # The model saw the client's function and nothing else: no shell, no patch tool, no
    # request_user_input (lean profile + the engine's catalog without apply_patch).
    tools_sent = fake_backend.requests("/codex/responses")[-1]["body"]["tools"]
    assert [t.get("name") for t in tools_sent] == ["get_weather"]

    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "18C sunny"},
    ]
    before = fake_backend.responses_count("acct_alice")
    second = client.chat.completions.create(model="codex", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "It is 18C and sunny in Paris."
    assert second.choices[0].finish_reason == "stop"
    # The same turn went on: codex sent the tool output to the backend in its follow-up call.
    assert fake_backend.responses_count("acct_alice") == before + 1
    follow_up = fake_backend.requests("/codex/responses")[-1]["body"]
    outputs = [i for i in follow_up["input"] if i.get("type") == "function_call_output"]
    assert outputs and outputs[-1]["call_id"] == "call_w1" and "18C sunny" in str(outputs[-1])


def test_unknown_tool_call_id_runs_a_fresh_turn(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    server, key = linked
    client = openai_client(server, key)
    done = client.chat.completions.create(
        model="codex",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_gone",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_gone", "content": "21C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert done.choices[0].message.content == "Hello from the fake backend."
    prompt = json.dumps(fake_backend.requests("/codex/responses")[-1]["body"]["input"])
    assert "21C" in prompt  # the result reached the model as an injected function_call_output


def test_parallel_tool_calls_come_back_together(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    server, key = linked
    step = {
        "kind": "function_call",
        "calls": [
            {"name": "get_weather", "arguments": '{"city": "Paris"}', "call_id": "call_p1"},
            {"name": "get_weather", "arguments": '{"city": "Rome"}', "call_id": "call_p2"},
        ],
    }
    fake_backend.script("acct_alice", step, fake_backend.reply("Paris 18C, Rome 24C."))
    client = openai_client(server, key)
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    first = client.chat.completions.create(model="codex", messages=messages, tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls
    assert sorted(c.id for c in calls) == ["call_p1", "call_p2"]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    for c, result in zip(calls, ("18C", "24C"), strict=True):
        messages.append({"role": "tool", "tool_call_id": c.id, "content": result})
    second = client.chat.completions.create(model="codex", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Paris 18C, Rome 24C."


def test_parked_turn_expires_and_a_late_answer_runs_fresh(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    openai_client: Any,
) -> None:
    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url), toolTurnTtlSeconds=1
    )
    key = link_user(server, tmp_path, "tina", "acct_tina")
    server.start()
    fake_backend.script("acct_tina", _function_call("call_late"))
    client = openai_client(server, key)
    messages: list[dict] = [{"role": "user", "content": "Weather?"}]
    first = client.chat.completions.create(model="codex", messages=messages, tools=[WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    time.sleep(2.5)  # past the TTL: the reaper closes the parked turn
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": "call_late", "content": "7C rain"})
    second = client.chat.completions.create(model="codex", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Hello from the fake backend."
    assert "7C rain" in json.dumps(fake_backend.requests("/codex/responses")[-1]["body"]["input"])


def test_responses_api_with_the_sdk(linked: Any, fake_backend: Any, openai_client: Any) -> None:
    server, key = linked
    client = openai_client(server, key)
    fake_backend.script("acct_alice", fake_backend.reply("Plain response text", chunks=3))
    done = client.responses.create(model="codex", input="Hi", instructions="Be brief.")
    assert done.output_text == "Plain response text"
    assert done.status == "completed" and done.usage.input_tokens == 11
    assert "Be brief." in json.dumps(fake_backend.requests("/codex/responses")[-1]["body"])

    fake_backend.script("acct_alice", fake_backend.reply("Streamed response text", chunks=3))
    deltas, final = [], None
    with client.responses.stream(model="codex", input="Hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == "Streamed response text" and len(deltas) >= 2
    assert final.output_text == "Streamed response text"

    # Deltas spaced by the backend reach the client spaced too (buffered writes flush as soon
    # as the engine has nothing more queued).
    fake_backend.script(
        "acct_alice", fake_backend.reply("one two three", chunks=3, delay_between_ms=300)
    )
    arrivals = []
    with client.responses.stream(model="codex", input="Count") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == 2 and all(gap > 0.2 for gap in gaps), gaps

    # Function calling through the Responses shapes resumes the parked turn.
    fake_backend.script(
        "acct_alice", _function_call("call_r1"), fake_backend.reply("18C in Paris.")
    )
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": WEATHER_TOOL["function"]["parameters"],
    }
    first = client.responses.create(model="codex", input="Weather in Paris?", tools=[tool])
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].call_id == "call_r1" and calls[0].name == "get_weather"
    second = client.responses.create(
        model="codex",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_r1", "output": "18C"}],
        tools=[tool],
    )
    assert second.output_text == "18C in Paris."


PIXEL_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE"
    "hQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_image_parts_reach_the_model(linked: Any, fake_backend: Any, openai_client: Any) -> None:
    server, key = linked
    client = openai_client(server, key)
    done = client.chat.completions.create(
        model="codex",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": PIXEL_PNG}},
                ],
            }
        ],
    )
    assert done.choices[0].message.content
    body = json.dumps(fake_backend.requests("/codex/responses")[-1]["body"])
    assert "iVBORw0KGgo" in body and "input_image" in body
    bad = [
        ("http://example.com/cat.png", "unsupported_image"),
        ("data:text/plain;base64,aGk=", "unsupported_image"),
        ("file:///etc/passwd", "unsupported_image"),
    ]
    for url, code in bad:
        status, _, raw = post(
            server,
            "/api/openai/v1/chat/completions",
            {
                "model": "codex",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
                ],
            },
            {"Authorization": f"Bearer {key}"},
        )
        assert_openai_error(status, raw, 400, code)


def test_app_server_recycled_once_its_memory_reached_the_mark(
    live_server_factory: Any,
    fake_backend: Any,
    tmp_path: Path,
    openai_client: Any,
) -> None:
    """Codex 0.169.0 keeps every finished chat thread in memory (~1.5 MiB each), so the
    gateway replaces an account's app-server whose RSS reached appServerRecycleMib (read every
    16 turns). Every answer still arrives, and one codex process per account is left once the
    old one has ended."""
    from codexpool.testing.fake_backend import codex_overrides

    from .e2e_helpers import link_user

    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url), appServerRecycleMib=1
    )
    key = link_user(server, tmp_path, "alice", "acct_alice")
    fake_backend.set_usage("acct_alice", primary_used=10, secondary_used=5)
    server.start()
    client = openai_client(server, key)
    for i in range(18):  # the 16th turn reads the RSS: above 1 MiB, so a replacement starts
        answer = client.chat.completions.create(
            model="codex", messages=[{"role": "user", "content": f"hi {i}"}]
        )
        assert answer.choices[0].message.content
    deadline = time.monotonic() + 15
    while len(_codex_pids(server)) != 1:
        assert time.monotonic() < deadline, _codex_pids(server)
        time.sleep(0.1)
    assert server.log().count("Recycled codex app-server of account") == 1
    # codex's databases live in a directory per app-server, none in the account's home; the
    # retired process's log database (it grows by every turn) went with it, the rest waits as
    # the account's spare.
    state = server.settings.codex_state_path

    def live_dirs() -> list[Path]:
        return [p for p in state.iterdir() if not p.name.endswith(".spare")]

    # The retired process's directory goes after the process has ended (AppServer.close), a
    # moment after its pid disappears: wait for that too rather than race it.
    while len(live_dirs()) != 1:
        assert time.monotonic() < deadline, live_dirs()
        time.sleep(0.1)
    [live] = live_dirs()
    assert (live / "logs_2.sqlite").is_file() and (live / "state_5.sqlite").is_file()
    assert not list(server.settings.codex_homes.glob("*/*.sqlite*"))
    server.stop()
    assert [p.name for p in state.iterdir()] == [live.name.split(".")[0] + ".spare"]
    assert not list(state.glob("*/logs_*"))


def test_a_parked_tool_turn_yields_its_account_slot_to_new_work(
    live_server_factory: Any,
    fake_backend: Any,
    tmp_path: Path,
    openai_client: Any,
) -> None:
    """A parked tool-call turn holds one of the account's turn slots (its thread lives on the
    app-server), but never blocks new work: with maxTurnsPerAccount 1 another request closes
    it and is served at once (it used to wait out the queue and get 429 account_busy), and the
    late tool results then run as a fresh turn with the conversation as its history."""
    from codexpool.testing.fake_backend import codex_overrides

    from .e2e_helpers import link_user

    server = live_server_factory(
        start=False,
        codexConfigOverrides=codex_overrides(fake_backend.url),
        maxTurnsPerAccount=1,
        maxQueueWaitMs=500,
    )
    key = link_user(server, tmp_path, "alice", "acct_alice")
    fake_backend.set_usage("acct_alice", primary_used=10, secondary_used=5)
    server.start()
    fake_backend.script(
        "acct_alice",
        _function_call(),
        fake_backend.reply("Meanwhile, hello."),
        fake_backend.reply("It is 18C and sunny in Paris."),
    )
    client = openai_client(server, key)
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="codex", messages=messages, tools=[WEATHER_TOOL])
    tc = first.choices[0].message.tool_calls[0]
    other = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "Hello?"}]
    )
    assert other.choices[0].message.content == "Meanwhile, hello."
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": tc.id,
                    "type": "function",
                    "function": {"name": tc.function.name, "arguments": tc.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": tc.id, "content": "18C sunny"},
    ]
    second = client.chat.completions.create(model="codex", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "It is 18C and sunny in Paris."
    bodies = [r["body"] for r in fake_backend.requests("/codex/responses")]
    parked = next(b for b in bodies if "Weather in Paris?" in json.dumps(b["input"]))
    follow_up = bodies[-1]
    # A fresh turn (its own thread, so its own cache key) with the results as history.
    assert follow_up["prompt_cache_key"] != parked["prompt_cache_key"]
    assert "18C sunny" in json.dumps(follow_up["input"])


def _timed_sse(server: LiveServer, key: str, path: str, body: dict) -> tuple[float, list]:
    """POST a streamed request; return when the headers came and each non-empty line with
    its arrival time (seconds from the request)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=60)
    try:
        t0 = time.monotonic()
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        headers_at = time.monotonic() - t0
        assert resp.status == 200
        lines: list[tuple[float, bytes]] = []
        while line := resp.readline():
            if line.strip():
                lines.append((time.monotonic() - t0, line.strip()))
        return headers_at, lines
    finally:
        conn.close()


def test_silent_turn_keeps_the_stream_alive(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path, openai_client: Any
) -> None:
    """While codex says nothing for longer than streamKeepAliveMs (here the backend's first
    byte takes 1.5 s), the stream opens and carries SSE comment pings, so a proxy with an
    idle timeout keeps it; the answer then follows in the same stream, which the SDK reads
    as usual. Chat completions and the Responses API alike."""
    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url), streamKeepAliveMs=250
    )
    key = link_user(server, tmp_path, "kim", "acct_kim")
    server.start()
    client = openai_client(server, key)
    hello = [{"role": "user", "content": "hi"}]
    # A first turn starts the app-server (whose start-up requests would take a scripted step).
    assert client.chat.completions.create(model="codex", messages=hello).choices[0].message
    slow = fake_backend.reply("Late but here.", chunks=2, delay_first_ms=1500)

    for path, body, is_text in (
        (
            "/api/openai/v1/chat/completions",
            {"model": "codex", "messages": hello, "stream": True},
            lambda x: re.search(rb'"content":"[^"]', x),
        ),
        (
            "/api/openai/v1/responses",
            {"model": "codex", "input": "hi", "stream": True},
            lambda x: x.startswith(b"event: response.output_text.delta"),
        ),
    ):
        fake_backend.script("acct_kim", slow)
        headers_at, lines = _timed_sse(server, key, path, body)
        first_text = next(t for t, x in lines if is_text(x))
        pings = [t for t, x in lines if x == b": ping"]
        assert headers_at < first_text - 0.5, (path, headers_at, first_text)  # open before text
        assert len([t for t in pings if t < first_text]) >= 2, (path, lines)
        everything = b"".join(x for _, x in lines)
        assert b"Late" in everything and b"here." in everything, path  # the answer followed

    fake_backend.script("acct_kim", slow)
    stream = client.chat.completions.create(model="codex", messages=hello, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
        "Late but here."
    )


def _finish_reasons_and_usage(chunks: list) -> tuple[list[str], list]:
    reasons = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    return reasons, [chunk.usage for chunk in chunks if chunk.usage]


def test_tool_call_stream_carries_usage_and_one_finish_reason(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    """Issue 17 item 5: a stream ending in `tool_calls` still carries the usage chunk asked
    for with `stream_options.include_usage`, and every stream names its finish_reason once."""
    server, key = linked
    fake_backend.script(
        "acct_alice", _function_call("call_u1"), fake_backend.reply("18C in Paris.")
    )
    client = openai_client(server, key)
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris?"}]
    options = {"include_usage": True}
    chunks = list(
        client.chat.completions.create(
            model="codex",
            messages=messages,
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options=options,
        )
    )
    reasons, usages = _finish_reasons_and_usage(chunks)
    assert reasons == ["tool_calls"]
    assert len(usages) == 1 and chunks[-1].usage is not None and chunks[-1].choices == []
    # Codex counts a step's tokens only once the calls' results are in, so this step's count
    # comes with the resumed answer below; the chunk is here all the same (zeros).
    assert usages[0].total_tokens == 0
    call = next(tc for c in chunks for ch in c.choices for tc in ch.delta.tool_calls or [])
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18C"},
    ]
    chunks = list(
        client.chat.completions.create(
            model="codex",
            messages=messages,
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options=options,
        )
    )
    reasons, usages = _finish_reasons_and_usage(chunks)
    assert reasons == ["stop"]
    assert "".join(c.delta.content or "" for ch in chunks for c in ch.choices) == "18C in Paris."
    # The resumed answer carries both steps' counts (the fake backend: 11 input tokens each).
    assert len(usages) == 1 and usages[0].prompt_tokens == 22


def test_tool_choice_reaches_the_model(linked: Any, fake_backend: Any, openai_client: Any) -> None:
    """Issue 17 item 2: `none` hides the tools from the model; `required` and a named function
    travel as an instruction in what the thread gets (Codex itself always asks with `auto`),
    on chat and on the Responses API; `auto` leaves both alone."""
    server, key = linked
    client = openai_client(server, key)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]

    def upstream() -> dict:
        return fake_backend.requests("/codex/responses")[-1]["body"]

    def instructions() -> str:  # the thread's instructions reach the model as developer text
        items = upstream()["input"]
        return json.dumps([i for i in items if i.get("role") == "developer"])

    fake_backend.script("acct_alice", fake_backend.reply("No tools today."))
    answer = client.chat.completions.create(
        model="codex", messages=messages, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert answer.choices[0].message.content == "No tools today."
    assert answer.choices[0].finish_reason == "stop"
    assert upstream().get("tools", []) == []  # not offered to the model at all
    assert "Be brief." in json.dumps(upstream())

    fake_backend.script("acct_alice", fake_backend.reply("Sunny."))
    client.chat.completions.create(
        model="codex", messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    assert [t["name"] for t in upstream()["tools"]] == ["get_weather"]
    assert "must call" not in json.dumps(upstream())

    fake_backend.script("acct_alice", _function_call("call_req"))
    first = client.chat.completions.create(
        model="codex", messages=messages, tools=[WEATHER_TOOL], tool_choice="required"
    )
    assert first.choices[0].finish_reason == "tool_calls"
    assert first.choices[0].message.tool_calls[0].function.name == "get_weather"
    sent = upstream()
    assert [t["name"] for t in sent["tools"]] == ["get_weather"]
    assert "Every reply must call at least one of the provided functions" in instructions()
    assert "Be brief." in instructions()

    fake_backend.script("acct_alice", _function_call("call_named"))
    named = client.chat.completions.create(
        model="codex",
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert named.choices[0].message.tool_calls[0].id == "call_named"
    assert "Every reply must call the function `get_weather`" in instructions()

    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": WEATHER_TOOL["function"]["parameters"],
    }
    fake_backend.script("acct_alice", _function_call("call_resp"))
    response = client.responses.create(
        model="codex",
        input="Weather in Paris?",
        tools=[tool],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    assert [item.call_id for item in response.output if item.type == "function_call"] == [
        "call_resp"
    ]
    assert "Every reply must call the function `get_weather`" in instructions()
    fake_backend.script("acct_alice", fake_backend.reply("Plain."))
    response = client.responses.create(
        model="codex", input="Weather in Paris?", tools=[tool], tool_choice="none"
    )
    assert response.output_text == "Plain." and upstream().get("tools", []) == []


def test_responses_text_format_reaches_codex(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    """Issue 17 item 1: `/v1/responses` honours `text.format` like chat's `response_format`:
    a `json_schema` (the SDK's `responses.parse`) becomes Codex's output schema, `json_object`
    the JSON instruction, `text` nothing; a bad format is a 400 naming it."""
    import pydantic

    class Sum(pydantic.BaseModel):
        answer: int

    server, key = linked
    client = openai_client(server, key)

    def upstream() -> dict:
        return fake_backend.requests("/codex/responses")[-1]["body"]

    fake_backend.script("acct_alice", fake_backend.reply('{"answer": 4}', chunks=3))
    parsed = client.responses.parse(model="codex", input="2+2?", text_format=Sum)
    assert parsed.output_parsed == Sum(answer=4)
    sent = upstream()["text"]["format"]
    assert sent["type"] == "json_schema" and sent["schema"]["properties"] == {
        "answer": {"title": "Answer", "type": "integer"}
    }

    fake_backend.script("acct_alice", fake_backend.reply('{"answer": 5}', chunks=3))
    with client.responses.stream(model="codex", input="2+3?", text_format=Sum) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Sum(answer=5)
    assert upstream()["text"]["format"]["schema"]["required"] == ["answer"]

    fake_backend.script("acct_alice", fake_backend.reply('{"ok": true}'))
    done = client.responses.create(
        model="codex", input="JSON please", text={"format": {"type": "json_object"}}
    )
    assert json.loads(done.output_text) == {"ok": True}
    assert "Answer with one valid JSON object" in json.dumps(upstream()["input"])
    assert "format" not in upstream().get("text", {})

    fake_backend.script("acct_alice", fake_backend.reply("Just prose."))
    done = client.responses.create(model="codex", input="Hi", text={"format": {"type": "text"}})
    assert done.output_text == "Just prose." and "format" not in upstream().get("text", {})

    for bad, param in (
        ({"format": {"type": "xml"}}, "text.format.type"),
        ({"format": {"type": "json_schema", "name": "x"}}, "text.format.schema"),
        ("json", "text"),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="codex", input="Hi", text=bad)  # type: ignore[arg-type]
        assert info.value.body["param"] == param, info.value.body


def test_responses_stream_function_call_events(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    """Issue 17 item 1: a streamed Responses function call comes as OpenAI streams it (item
    added, arguments delta and done, item done, completed), read through the SDK's
    `responses.stream` helper and its typed events; a text answer closes its content part."""
    from openai.types.responses import (
        ResponseCompletedEvent,
        ResponseFunctionCallArgumentsDoneEvent,
        ResponseOutputItemAddedEvent,
        ResponseOutputItemDoneEvent,
    )

    server, key = linked
    client = openai_client(server, key)
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": WEATHER_TOOL["function"]["parameters"],
    }
    fake_backend.script("acct_alice", _function_call("call_s1"), fake_backend.reply("18C."))
    with client.responses.stream(model="codex", input="Weather?", tools=[tool]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, delta, done, item_done, completed = events[1:]
    assert isinstance(added, ResponseOutputItemAddedEvent)
    assert added.item.type == "function_call" and added.item.name == "get_weather"
    assert added.item.call_id == "call_s1" and added.item.arguments == ""
    assert delta.item_id == added.item.id and delta.output_index == 0
    assert isinstance(done, ResponseFunctionCallArgumentsDoneEvent)
    assert json.loads(done.arguments) == {"city": "Paris"}
    assert isinstance(item_done, ResponseOutputItemDoneEvent) and item_done.item.id == added.item.id
    assert isinstance(completed, ResponseCompletedEvent)
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].call_id == "call_s1"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}

    with client.responses.stream(
        model="codex",
        previous_response_id=final.id,
        input=[{"type": "function_call_output", "call_id": "call_s1", "output": "18C"}],
        tools=[tool],
    ) as stream:
        kinds = [e.type for e in stream]
        assert stream.get_final_response().output_text == "18C."
    assert kinds[:3] == [
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


EXEC_TOOL = {
    "type": "function",
    "function": {
        "name": "exec_command",
        "description": "Run a command on the client's machine",
        "parameters": {
            "type": "object",
            "properties": {"cmd": {"type": "string"}},
            "required": ["cmd"],
        },
    },
}


def _exec_call(call_id: str) -> dict:
    """The model calls the client's `exec_command` by the alias it was offered."""
    return {
        "kind": "function_call",
        "name": "client_exec_command",
        "arguments": '{"cmd": "ls"}',
        "call_id": call_id,
    }


def test_client_function_named_like_a_codex_tool_travels_under_an_alias(
    linked: Any, fake_backend: Any, openai_client: Any
) -> None:
    """Issue 17 item 4: a client function named like one of Codex's own tools reaches the
    model as `client_<name>` (Codex would drop it), and calls to it come back under the
    client's name: chat tool_calls and deltas, Responses items and events, the named
    tool_choice and the injected history all agree."""
    server, key = linked
    client = openai_client(server, key)

    def upstream() -> dict:
        return fake_backend.requests("/codex/responses")[-1]["body"]

    # Chat: offered under the alias, called under it, answered under the client's name.
    fake_backend.script("acct_alice", _exec_call("call_x1"), fake_backend.reply("Two files."))
    messages: list[dict] = [{"role": "user", "content": "List the files."}]
    tools = [EXEC_TOOL, WEATHER_TOOL]
    first = client.chat.completions.create(model="codex", messages=messages, tools=tools)
    offered = {t["name"]: t.get("description") for t in upstream()["tools"]}
    assert offered == {
        "client_exec_command": "Run a command on the client's machine",
        "get_weather": "Current weather of a city",
    }
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_x1", "exec_command")
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": "call_x1", "content": "a.txt b.txt"})
    second = client.chat.completions.create(model="codex", messages=messages, tools=tools)
    assert second.choices[0].message.content == "Two files."
    outputs = [i for i in upstream()["input"] if i.get("type") == "function_call_output"]
    assert outputs[-1]["call_id"] == "call_x1" and "a.txt b.txt" in str(outputs[-1])

    # A conversation the gateway does not hold is injected as history: the earlier call
    # carries the alias too, so the model sees the function it was offered.
    fake_backend.script("acct_alice", fake_backend.reply("Noted."))
    history = [
        {"role": "user", "content": "List the files."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_old",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd": "ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_old", "content": "c.txt"},
    ]
    client.chat.completions.create(model="codex", messages=history, tools=[EXEC_TOOL])
    calls = [i for i in upstream()["input"] if i.get("type") == "function_call"]
    assert [(c["call_id"], c["name"]) for c in calls] == [("call_old", "client_exec_command")]

    # Streamed, with the function named in tool_choice: the instruction names the alias.
    fake_backend.script("acct_alice", _exec_call("call_x2"))
    names = [
        tc.function.name
        for chunk in client.chat.completions.create(
            model="codex",
            messages=[{"role": "user", "content": "List the files."}],
            tools=[EXEC_TOOL],
            tool_choice={"type": "function", "function": {"name": "exec_command"}},
            stream=True,
        )
        for choice in chunk.choices
        for tc in choice.delta.tool_calls or []
        if tc.function and tc.function.name
    ]
    assert names == ["exec_command"]
    developer = json.dumps([i for i in upstream()["input"] if i.get("role") == "developer"])
    assert "Every reply must call the function `client_exec_command`" in developer

    # Responses API, plain and streamed.
    tool = {
        "type": "function",
        "name": "exec_command",
        **{k: EXEC_TOOL["function"][k] for k in ("description", "parameters")},
    }
    fake_backend.script("acct_alice", _exec_call("call_r1"), fake_backend.reply("Done."))
    done = client.responses.create(model="codex", input="List the files.", tools=[tool])
    items = [i for i in done.output if i.type == "function_call"]
    assert [(i.call_id, i.name) for i in items] == [("call_r1", "exec_command")]
    assert [t["name"] for t in upstream()["tools"]] == ["client_exec_command"]
    after = client.responses.create(
        model="codex",
        previous_response_id=done.id,
        input=[{"type": "function_call_output", "call_id": "call_r1", "output": "d.txt"}],
        tools=[tool],
    )
    assert after.output_text == "Done."

    fake_backend.script("acct_alice", _exec_call("call_s1"))
    with client.responses.stream(model="codex", input="List.", tools=[tool]) as stream:
        events = list(stream)
    named = [
        getattr(e, "item", None) and e.item.name or getattr(e, "name", None)
        for e in events
        if e.type
        in (
            "response.output_item.added",
            "response.function_call_arguments.done",
            "response.output_item.done",
        )
    ]
    assert named == ["exec_command"] * 3
