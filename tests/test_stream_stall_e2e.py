"""A client that stops reading its stream cannot hold a turn, its account slot or the
gateway's memory: a write that waits past `streamWriteTimeoutMs` drops the connection and
interrupts the turn, and a turn whose reader falls too far behind codex ends (its backlog
is bounded). Once, a slow reader held a slot past the turn timeout and grew the gateway from
56 to 378 MiB.

A real socket client with a tiny receive buffer that reads nothing, the real server and
codex binary, and the fake backend streaming a long answer.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from codexpool.testing.fake_backend import codex_overrides

from .e2e_helpers import link_user, usage_rows

pytestmark = pytest.mark.e2e
METRICS_TOKEN = "metrics-token-for-tests"
# More than the socket buffers can take: the kernel lets a sender queue up to 4 MiB.
LONG_TEXT = "All work and no play makes a long answer. " * 300_000  # ~12 MiB


def _server(live_server_factory: Any, fake_backend: Any, tmp_path: Path, **overrides: Any):
    server = live_server_factory(
        start=False,
        codexConfigOverrides=codex_overrides(fake_backend.url),
        metricsToken=METRICS_TOKEN,
        maxTurnsPerAccount=1,
        maxQueueWaitMs=300,
        **overrides,
    )
    key = link_user(server, tmp_path, "alice", "acct_alice")
    fake_backend.set_usage("acct_alice", primary_used=10, secondary_used=5)
    server.start()
    return server, key


def _stalled_client(server: Any, key: str) -> socket.socket:
    """Send a streamed chat request from a socket that will never read its answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.connect(("127.0.0.1", server.settings.port))
    body = json.dumps(
        {"model": "codex", "stream": True, "messages": [{"role": "user", "content": "Long!"}]}
    ).encode()
    sock.sendall(
        b"POST /api/openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    return sock


def _refused(server: Any, reason: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=30)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    text = conn.getresponse().read().decode()
    conn.close()
    match = re.search(rf'^codexpool_refused_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def _drain(sock: socket.socket, within: float) -> bytes:
    """Read what the server sent until it closed or reset the connection."""
    sock.settimeout(within)
    got = b""
    try:
        while chunk := sock.recv(1 << 16):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def test_a_stalled_stream_is_dropped_and_frees_its_slot(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    openai_client: Any,
) -> None:
    server, key = _server(live_server_factory, fake_backend, tmp_path, streamWriteTimeoutMs=1500)
    fake_backend.script("acct_alice", fake_backend.reply(LONG_TEXT, chunks=3000))
    sock = _stalled_client(server, key)
    request.addfinalizer(sock.close)
    deadline = time.monotonic() + 60
    while _refused(server, "stream_write_timeout") < 1:
        assert time.monotonic() < deadline, "the stalled stream was never dropped"
        time.sleep(0.2)
    # The turn was interrupted and the account's only slot is free again at once.
    client = openai_client(server, key)
    fake_backend.script("acct_alice", fake_backend.reply("Next, please."))
    done = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "Hi"}]
    )
    assert done.choices[0].message.content == "Next, please."
    got = _drain(sock, 10)  # what the socket held; then the reset, not a hang
    assert got.startswith(b"HTTP/1.1 200") and b"[DONE]" not in got
    assert usage_rows(server, "status")[0] == (499,)


def test_a_reader_far_behind_codex_ends_its_turn(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """With a long write timeout, the turn's backlog bound ends it first: codex's messages
    stop piling up in the gateway (the whole 12 MiB answer used to be buffered for the
    stalled client), and when the client reads again the stream ends with an error."""
    server, key = _server(live_server_factory, fake_backend, tmp_path, streamWriteTimeoutMs=600_000)
    fake_backend.script("acct_alice", fake_backend.reply(LONG_TEXT, chunks=12000))
    sock = _stalled_client(server, key)
    request.addfinalizer(sock.close)
    deadline = time.monotonic() + 60
    while "messages behind (a stalled client)" not in server.log():
        assert time.monotonic() < deadline, "codex's output kept piling up"
        time.sleep(0.2)
    # The client reads at last: the part of the answer the gateway held, then the error.
    sock.settimeout(60)
    got = b""
    while b"data: [DONE]" not in got[-100:]:
        chunk = sock.recv(1 << 16)
        assert chunk, got[-300:]
        got += chunk
    assert b'"code":"stream_stalled"' in got[-400:]
    assert len(got) < len(LONG_TEXT) / 2  # most of the answer was never buffered
    assert _refused(server, "stream_write_timeout") == 0  # the backlog bound ended it
