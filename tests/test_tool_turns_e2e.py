"""Parked tool-call turns are bounded: they hold their key's concurrency place and their
account's turn slot until answered or closed, at most `maxParkedTurnsPerKey` per key, the
oldest closed first, so unanswered function calls cannot pile up threads on the app-server
(400 of them grew one account to 5 app-servers and 1.95 GiB) yet never lock a key out.

Real server, real codex binary, fake ChatGPT backend.
"""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import openai
import pytest

from codexpool.testing.fake_backend import codex_overrides

from .conftest import codex_children
from .e2e_helpers import link_user
from .test_chat_e2e import WEATHER_TOOL, _function_call

pytestmark = pytest.mark.e2e
METRICS_TOKEN = "metrics-token-for-tests"


def _server(live_server_factory: Any, fake_backend: Any, tmp_path: Path, **overrides: Any):
    server = live_server_factory(
        start=False,
        codexConfigOverrides=codex_overrides(fake_backend.url),
        metricsToken=METRICS_TOKEN,
        **overrides,
    )
    key = link_user(server, tmp_path, "alice", "acct_alice")
    fake_backend.set_usage("acct_alice", primary_used=10, secondary_used=5)
    return server, key


def _metric(server: Any, name: str) -> float | None:
    """Return one sample of /metrics (None when absent)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=30)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    text = conn.getresponse().read().decode()
    conn.close()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def _call_tools(client: openai.OpenAI, fake_backend: Any, n: int) -> list[str]:
    """Send n requests whose answer is a function call, never answered; return the call ids."""
    ids = [f"call_n{i}" for i in range(n)]
    fake_backend.script("acct_alice", *(_function_call(c) for c in ids))
    for call_id in ids:
        first = client.chat.completions.create(
            model="codex",
            messages=[{"role": "user", "content": f"Weather {call_id}?"}],
            tools=[WEATHER_TOOL],
        )
        assert first.choices[0].message.tool_calls[0].id == call_id
    return ids


def _answer(client: openai.OpenAI, call_id: str, result: str) -> str | None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]
    done = client.chat.completions.create(model="codex", messages=messages, tools=[WEATHER_TOOL])
    return done.choices[0].message.content


def _resumed(fake_backend: Any, call_id: str) -> bool:
    """Tell whether the last backend call continued the parked turn of this call.

    A fresh turn carries the function call and its output too (injected as history), so
    what tells them apart is the parked turn's own first message, which `_answer` never sends.
    """
    body = fake_backend.requests("/codex/responses")[-1]["body"]["input"]
    return f"Weather {call_id}?" in json.dumps(body)


def test_a_key_keeps_at_most_max_parked_turns_the_oldest_closed_first(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    openai_client: Any,
) -> None:
    server, key = _server(
        live_server_factory, fake_backend, tmp_path, maxParkedTurnsPerKey=2, maxTurnsPerAccount=8
    )
    server.start()
    client = openai_client(server, key)
    ids = _call_tools(client, fake_backend, 5)
    assert _metric(server, "codexpool_parked_tool_turns") == 2
    assert _metric(server, 'codexpool_refused_total{reason="parked_turn_over_key_bound"}') == 3
    # The newest are still parked and resume; the oldest were closed and run fresh.
    fake_backend.script("acct_alice", fake_backend.reply("Resumed."), fake_backend.reply("Fresh."))
    assert _answer(client, ids[-1], "18C") == "Resumed."
    assert _resumed(fake_backend, ids[-1])
    assert _answer(client, ids[0], "7C") == "Fresh."
    assert not _resumed(fake_backend, ids[0])
    assert _metric(server, "codexpool_parked_tool_turns") == 1
    assert server.proc is not None
    assert len(codex_children(server.proc.pid)) == 1  # one app-server, no pile-up


def test_a_parked_turn_holds_its_key_concurrency_place(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    openai_client: Any,
) -> None:
    """With the key capped at 1 request at once, unanswered tool turns used to pile up (each
    request ended, so the cap never saw them). Now the parked turn keeps the key's place:
    the next request closes it to get in (never a 429 because of a parked turn), so at most
    one is parked."""
    server, key = _server(
        live_server_factory, fake_backend, tmp_path, maxTurnsPerAccount=3, maxQueueWaitMs=500
    )
    con = sqlite3.connect(server.settings.db_path)
    con.execute("UPDATE api_keys SET max_concurrent = 1 WHERE kind = 'user'")
    con.commit()
    con.close()
    server.start()
    client = openai_client(server, key)
    ids = _call_tools(client, fake_backend, 4)
    assert _metric(server, "codexpool_parked_tool_turns") == 1
    closed = 'codexpool_refused_total{reason="parked_turn_over_key_concurrency"}'
    assert _metric(server, closed) == 3
    # Its answer takes the parked turn's place over (no 429 at the cap of 1).
    fake_backend.script("acct_alice", fake_backend.reply("Resumed."))
    assert _answer(client, ids[-1], "18C") == "Resumed." and _resumed(fake_backend, ids[-1])
    assert _metric(server, "codexpool_parked_tool_turns") == 0


def test_parked_turns_hold_their_account_turn_slots(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    openai_client: Any,
) -> None:
    """For an uncapped key, the account's turn slots bound the parked turns: a new turn on a
    full account closes the oldest parked one rather than waiting for it."""
    server, key = _server(
        live_server_factory, fake_backend, tmp_path, maxTurnsPerAccount=3, maxQueueWaitMs=500
    )
    server.start()
    client = openai_client(server, key)
    _call_tools(client, fake_backend, 5)
    assert _metric(server, "codexpool_parked_tool_turns") == 3
    slots = 'codexpool_refused_total{reason="parked_turn_over_account_slots"}'
    assert _metric(server, slots) == 2
    fake_backend.script("acct_alice", fake_backend.reply("Plain."))
    plain = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "Hi"}]
    )
    assert plain.choices[0].message.content == "Plain."  # served at once, not account_busy
    assert _metric(server, "codexpool_parked_tool_turns") == 2
