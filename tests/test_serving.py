"""`codexpool serve` bounds its connections: the soft open-file limit is raised to the hard
limit at start, and connections beyond `maxConnections` get a 503 and are closed at once while
the open ones (a monitor's kept-alive health check) keep working; once idle sockets go, new
connections are accepted again. 1,100 idle sockets under a 1,024 limit once left the server
unable to answer /api/health.

The real server process over loopback.
"""

from __future__ import annotations

import http.client
import json
import re
import resource
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from codexpool.serving import FD_RESERVE, effective_max_connections

METRICS_TOKEN = "metrics-token-for-tests"


def _soft_nofile(pid: int) -> tuple[int, int]:
    """Return (soft, hard) 'Max open files' of a process."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit")


def test_serve_raises_the_soft_open_file_limit(
    live_server_factory: Any, request: pytest.FixtureRequest
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip("the hard open-file limit leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))  # inherited by the server
    request.addfinalizer(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    server = live_server_factory(start=False)
    server.start()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert server.proc is not None
    got_soft, got_hard = _soft_nofile(server.proc.pid)
    assert got_soft == got_hard and got_soft > 512


def test_the_cap_leaves_descriptors_for_everything_else() -> None:
    assert effective_max_connections(4096, 1 << 20) == 4096
    assert effective_max_connections(4096, 1024) == 1024 - FD_RESERVE
    assert effective_max_connections(10, 1024) == 10


def _get(conn: http.client.HTTPConnection, path: str, **headers: str) -> tuple[int, dict]:
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def _refused(sock: socket.socket, within: float) -> bool:
    """Tell whether the server answered this silent socket with its 503 and closed it."""
    sock.settimeout(within)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        return False  # still open: it was accepted and waits for a request
    except ConnectionResetError:
        pass
    assert got.startswith(b"HTTP/1.1 503"), got
    assert b'"code": "too_many_connections"' in got and b"Retry-After: 1" in got
    return True


def _refused_among(socks: list[socket.socket], within: float) -> list[socket.socket]:
    """Return the sockets the server refused (503 and close) within the time given; the
    others were accepted and stay silent."""
    deadline = time.monotonic() + within
    waiting, refused = list(socks), []
    while waiting and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(waiting, [], [], left)
        for sock in readable:
            waiting.remove(sock)
            assert _refused(sock, 5)
            refused.append(sock)
    return refused


def test_connections_beyond_max_connections_are_refused_cleanly(
    live_server_factory: Any, request: pytest.FixtureRequest
) -> None:
    server = live_server_factory(maxConnections=6, metricsToken=METRICS_TOKEN)
    port = server.settings.port
    monitor = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # kept alive
    request.addfinalizer(monitor.close)
    assert _get(monitor, "/api/health")[0] == 200
    idle: list[socket.socket] = []
    request.addfinalizer(lambda: [s.close() for s in idle])
    for _ in range(12):
        sock = socket.create_connection(("127.0.0.1", port))
        idle.append(sock)
        # The server registers or refuses it before the next comes: the count stays exact.
        select.select([sock], [], [], 0.3)
    refused = _refused_among(idle, within=5)
    assert len(refused) == 7  # 6 open: the monitor and the first 5 idle sockets
    # The open connections still work: the monitor's health check and metrics.
    assert _get(monitor, "/api/health")[0] == 200
    # A new connection meanwhile is refused with the 503, not left hanging.
    with socket.create_connection(("127.0.0.1", port)) as extra:
        assert _refused(extra, 5)
    for sock in idle:
        sock.close()
    deadline = time.monotonic() + 10
    while True:  # the server sees the idle sockets go; then new connections are served
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            status, body = _get(fresh, "/api/health")
            if status != 503 or body["error"]["code"] != "too_many_connections":
                break
        except (ConnectionError, http.client.BadStatusLine):
            pass  # refused while the client was still sending
        finally:
            fresh.close()
        assert time.monotonic() < deadline, "new connections stayed refused"
        time.sleep(0.1)
    assert status == 200 and body["status"]
    monitor.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    text = monitor.getresponse().read().decode()
    match = re.search(r'^codexpool_refused_total\{reason="max_connections"\} (\S+)$', text, re.M)
    assert match and float(match.group(1)) >= 8
