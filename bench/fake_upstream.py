"""An instant fake OpenAI-compatible upstream on loopback, for bench/compare.py.

LiteLLM's proxy talks HTTP to an OpenAI-compatible backend where codexpool talks JSON-RPC to a
codex app-server; to compare the two gateways fairly each gets an upstream that answers at
once with the same pieces: this server streams the four text pieces that
codexpool/testing/fake_codex.py streams, with the same spacing (`--delta-ms` before each piece,
as the fake app-server's FAKE_CODEX_DELAY_MS), then a usage chunk when asked for and `[DONE]`.

    python bench/fake_upstream.py [--port 0] [--delta-ms 0]

It prints `listening on <port>` once it accepts connections, and serves until killed.
`POST /bench/delay` with `{"ms": N}` changes the spacing for the requests that follow (so a
gateway in front need not be restarted between waves and steady runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codexpool.cli import new_event_loop  # noqa: E402
from codexpool.testing.fake_codex import REPLY  # noqa: E402

USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def _chunk(model: str, delta: dict, finish: str | None = None) -> bytes:
    """Return one SSE `data:` line holding a chat.completion.chunk."""
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def create_app(delay_ms: float) -> web.Application:
    """Return the app: POST /v1/chat/completions, streamed or not; POST /bench/delay."""
    spacing = {"s": delay_ms / 1000}

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        delay_s = spacing["s"]
        model = str(body.get("model") or "fake")
        if not body.get("stream"):
            for _ in REPLY:
                if delay_s:
                    await asyncio.sleep(delay_s)
            message = {"role": "assistant", "content": "".join(REPLY)}
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": USAGE,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_chunk(model, {"role": "assistant", "content": ""}))
        for piece in REPLY:
            if delay_s:
                await asyncio.sleep(delay_s)
            await resp.write(_chunk(model, {"content": piece}))
        await resp.write(_chunk(model, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": []}
            usage.update(created=int(time.time()), model=model, usage=USAGE)
            await resp.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def set_delay(request: web.Request) -> web.Response:
        spacing["s"] = float((await request.json())["ms"]) / 1000
        return web.json_response({"ms": spacing["s"] * 1000})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/bench/delay", set_delay)
    return app


async def serve(port: int, delay_ms: float) -> None:
    """Serve until cancelled; announce the bound port on stdout."""
    runner = web.AppRunner(create_app(delay_ms), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening on {bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delta-ms", type=float, default=0.0)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(args.port, args.delta_ms))


if __name__ == "__main__":
    main()
