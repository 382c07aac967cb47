"""Server-sent events: the few lines of the wire format the OpenAI SDKs read.

Owned rather than imported because the chat route needs exact control over when headers go out
(only after the first upstream event, so failover and real error statuses stay possible).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import fastjson

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}
DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


def encode(data: Any, event: str | None = None) -> bytes:
    """Encode one event: an optional `event:` line and one compact JSON `data:` line.

    A lone surrogate (possible in JSON text from upstream) becomes U+FFFD instead of ending
    the stream (fastjson.dumps).
    """
    head = f"event: {event}\n".encode() if event else b""
    return b"%sdata: %s\n\n" % (head, fastjson.dumps(data))


async def flush(
    resp: web.StreamResponse | None,
    pending: list[bytes],
    open_: Callable[[], Awaitable[web.StreamResponse]],
    *,
    ping: bool = False,
) -> web.StreamResponse | None:
    """Write the buffered events of a stream in one write (with a keep-alive comment when
    `ping`) and return the stream. Streams call it when the engine has caught up with codex
    (CaughtUp) or reports silence (Heartbeat).

    Before the stream is open a CaughtUp writes nothing, but a Heartbeat opens it with
    `open_` (which queues the shape's first event): a turn silent past the keep-alive interval
    before any output (a long reasoning step) would otherwise be cut by proxies and clients
    with an idle timeout. Failures that allow a real HTTP status and a failover to another
    account (usage limit, lost login) come within a second or two, long before the interval
    (streamKeepAliveMs, 15 s by default).
    """
    if resp is None:
        if not ping:
            return None
        resp = await open_()
    if ping:
        pending.append(PING)  # keeps proxies from closing
    if pending:
        await resp.write(b"".join(pending))
        pending.clear()
    return resp


class _EventStream(web.StreamResponse):
    """A stream whose headers leave with its first event, in one write (one TCP segment).

    aiohttp's plain StreamResponse sends them on prepare(); its Response class buffers them
    with this same switch. Were the switch to go away, headers would again go out at once.
    """

    _send_headers_immediately = False


async def open_stream(
    request: web.Request, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Send the SSE response headers and return the response to write events to."""
    resp = _EventStream(status=200, headers={**SSE_HEADERS, **(headers or {})})
    await resp.prepare(request)
    return resp
