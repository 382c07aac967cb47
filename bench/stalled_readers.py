"""Stalled readers: the gateway's memory while clients stop reading long streamed answers.

Starts the real gateway and codex binary against the fake backend, then opens N streamed chat
requests from sockets with a 4 KiB receive buffer that never read, each answered with a long
text (12 MiB by default). Prints the gateway's RSS idle and with the stalled streams open, and
how much of each answer the gateway held. The write timeout is set long so that what is
measured is the per-turn backlog bound (a turn's mailbox holds at most 4,096 messages), not
the timeout; issue 14 saw 56 -> 378 MiB with one slow reader before any bound.

    .venv/bin/python bench/stalled_readers.py [--readers 3] [--mib 12] [--chunks 12000]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from benchlib import rss_kib, start_gateway

from codexpool.config import find_codex_bin
from codexpool.testing.fake_backend import FakeBackend, codex_overrides


def stalled_request(port: int, key: str) -> socket.socket:
    """Send one streamed chat request from a socket that will never read its answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    body = json.dumps(
        {"model": "codex", "stream": True, "messages": [{"role": "user", "content": "Long!"}]}
    ).encode()
    sock.sendall(
        b"POST /api/openai/v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def main() -> None:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--mib", type=float, default=12)
    parser.add_argument("--chunks", type=int, default=12000)
    args = parser.parse_args()
    codex_bin = find_codex_bin()
    assert codex_bin, "no codex binary (run install.sh)"
    text = ("All work and no play makes a long answer. " * 400_000)[: int(args.mib * 2**20)]
    with FakeBackend() as backend, tempfile.TemporaryDirectory() as tmp:
        server, key = start_gateway(
            Path(tmp),
            codex_bin,
            codex_overrides(backend.url),
            streamWriteTimeoutMs=600_000,
            maxTurnsPerAccount=args.readers + 1,
        )
        backend.set_usage("acct_bench", primary_used=10, secondary_used=5)
        try:
            assert server.proc is not None
            time.sleep(2)
            idle = rss_kib(server.proc.pid) / 1024
            socks = []
            for _ in range(args.readers):
                backend.script("acct_bench", backend.reply(text, chunks=args.chunks))
                socks.append(stalled_request(server.settings.port, key))
                time.sleep(6)  # codex streams the whole answer in a few seconds
            stalled = rss_kib(server.proc.pid) / 1024
            dropped = server.log().count("messages behind (a stalled client)")
            print(
                f"gateway RSS {idle:.0f} MiB idle, {stalled:.0f} MiB with {args.readers} "
                f"stalled readers of a {args.mib:g} MiB answer "
                f"(+{(stalled - idle) / max(1, args.readers):.1f} MiB each); "
                f"{dropped} turns hit the backlog bound"
            )
            for sock in socks:
                sock.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
