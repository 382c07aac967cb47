"""Conversation benchmark: what each turn of one multi-turn chat costs upstream.

Starts `python -m codexpool serve` on loopback with one linked account whose app-server is the
real codex binary against the fake ChatGPT backend (which logs every `/responses` body), then
holds a --turns turn conversation through the gateway the way a client does (the whole history
in every request). Per turn it prints the size of the body codex sent upstream, whether its
`prompt_cache_key` equals the previous turn's (the backend's prompt cache follows a key), and
the time to the first content chunk. Then it opens --live conversations of two turns each on
the same account and prints the app-server's RSS with them all live. Not a test: it prints.

    .venv/bin/python bench/conversation.py [--turns 10] [--live 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import codex_version, descendants, rss_kib, run_loop, start_gateway

from codexpool.config import find_codex_bin
from codexpool.testing.fake_backend import FakeBackend, codex_overrides


async def stream_turn(
    session: aiohttp.ClientSession, url: str, key: str, messages: list[dict[str, Any]]
) -> tuple[str, float]:
    """Stream one chat completion; return (answer text, seconds to its first content chunk)."""
    body = {"model": "codex", "messages": messages, "stream": True}
    t0 = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = first if first is not None else time.perf_counter() - t0
                    pieces.append(text)
    return "".join(pieces), (first if first is not None else time.perf_counter() - t0)


async def conversation(
    session: aiohttp.ClientSession, url: str, key: str, turns: int, tag: str
) -> list[tuple[str, float]]:
    """Hold one conversation of `turns` turns; return each turn's (answer, TTFT)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a terse assistant."},
    ]
    out = []
    for turn in range(1, turns + 1):
        messages.append({"role": "user", "content": f"{tag}: question {turn}, answer briefly."})
        answer, ttft = await stream_turn(session, url, key, messages)
        messages.append({"role": "assistant", "content": answer})
        out.append((answer, ttft))
    return out


async def main(args: argparse.Namespace) -> None:
    codex_bin = find_codex_bin()
    if not codex_bin:
        raise SystemExit("the real codex binary is not installed")
    work = Path(tempfile.mkdtemp(prefix="codexpool-bench-conv-"))
    backend = FakeBackend().start()
    server = None
    try:
        server, key = start_gateway(work, codex_bin, codex_overrides(backend.url))
        url = f"{server.api}/chat/completions"
        print(f"codex {await codex_version(codex_bin)}, real app-server, fake backend")
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await stream_turn(session, url, key, [{"role": "user", "content": "warm up"}])
            backend.clear()
            turns = await conversation(session, url, key, args.turns, "bench")
            bodies = [r["body"] for r in backend.requests("/responses")]
            print("turn  upstream bytes  same cache key as previous  ttft ms")
            same = 0
            previous = None
            for index, ((_, ttft), body) in enumerate(zip(turns, bodies, strict=False), 1):
                cache_key = body.get("prompt_cache_key")
                equal = previous is not None and cache_key == previous
                same += equal
                previous = cache_key
                size = len(json.dumps(body, separators=(",", ":")).encode())
                flag = "-" if index == 1 else ("yes" if equal else "no")
                print(f"{index:>4}  {size:>14}  {flag:>26}  {ttft * 1000:>7.1f}")
            if len(bodies) != len(turns):
                print(f"(warning: {len(bodies)} upstream requests for {len(turns)} turns)")
            print(
                f"turns 2-{args.turns} on the previous turn's cache key: {same} of {args.turns - 1}"
            )
            first = turns[0][1] * 1000
            later = sorted(t for _, t in turns[1:])
            print(
                f"ttft turn 1 {first:.1f} ms; turns 2-{args.turns} median "
                f"{later[len(later) // 2] * 1000:.1f} ms"
            )
            assert server.proc is not None
            kids = descendants(server.proc.pid)
            before = sum(rss_kib(p) for p in kids) / 1024
            gate = asyncio.Semaphore(4)  # the account's default turn slots

            async def live(index: int) -> None:
                async with gate:
                    await conversation(session, url, key, 2, f"live {index}")

            await asyncio.gather(*(live(i) for i in range(args.live)))
            kids = descendants(server.proc.pid)
            after = sum(rss_kib(p) for p in kids) / 1024
            print(
                f"app-server RSS: {before:.0f} MiB before, {after:.0f} MiB with {args.live} "
                f"more two-turn conversations ({len(kids)} codex processes)"
            )
    finally:
        if server is not None:
            server.stop()
        backend.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--live", type=int, default=100)
    run_loop(main(parser.parse_args()))
