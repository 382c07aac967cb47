"""Server-sent events: the few lines of the wire format the OpenAI SDKs read.

Owned rather than imported because the chat route needs exact control over when headers go out
(only after the first upstream event, so failover and real error statuses stay possible).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import fastjson
from ..config import Settings

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}
_LOGGER = logging.getLogger(__name__)
STALL_REASON = "stream_write_timeout"
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


class StreamStalled(ConnectionResetError):
    """The client took no write within `streamWriteTimeoutMs`: the connection was dropped.

    A ConnectionResetError, so every caller treats it as the client gone: the turn is
    interrupted and its slot freed, as when the client hangs up.
    """


class _EventStream(web.StreamResponse):
    """A stream whose headers leave with its first event, in one write (one TCP segment),
    and whose writes give up after `write_timeout_s`.

    aiohttp's plain StreamResponse sends them on prepare(); its Response class buffers them
    with this same switch. Were the switch to go away, headers would again go out at once.

    A write waits while the socket's buffers are full; a client that stops reading would
    hold the request, its turn and the account slot forever (one once held a slot past the
    turn timeout while the gateway grew from 56 to 378 MiB). Past the timeout the connection
    is aborted (dropping what is buffered for it) and StreamStalled raised. The deadline is a
    plain timer handle per write (asyncio.timeout costs several times as much, on every
    chunk of every stream); aborting the transport is what wakes the blocked write.
    """

    _send_headers_immediately = False

    def __init__(
        self,
        request: web.Request,
        write_timeout_s: float,
        on_stall: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._request = request
        self._write_timeout_s = write_timeout_s
        self._on_stall = on_stall
        self._stalled = False

    async def write(self, data: Any) -> None:
        """Write, or drop the connection when the client takes nothing within the timeout."""
        await self._within_deadline(super().write(data))

    async def write_eof(self, data: bytes = b"") -> None:
        """End the body, under the same timeout as every write."""
        await self._within_deadline(super().write_eof(data))

    async def _within_deadline(self, writing: Awaitable[None]) -> None:
        timer = asyncio.get_running_loop().call_later(self._write_timeout_s, self._stall)
        try:
            await writing
        except ConnectionResetError as exc:
            self._raise_if_stalled(exc)
            raise
        finally:
            timer.cancel()
        self._raise_if_stalled(None)

    def _stall(self) -> None:
        self._stalled = True
        transport = self._request.transport
        if transport is not None:
            transport.abort()  # frees what the socket buffered and wakes the blocked write
        self._on_stall()

    def _raise_if_stalled(self, cause: BaseException | None) -> None:
        if self._stalled:
            raise StreamStalled(
                f"the client took no data for {self._write_timeout_s:g}s"
            ) from cause


async def open_stream(
    request: web.Request, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Send the SSE response headers and return the response to write events to."""
    from ..app_keys import (
        REFUSALS,
        SETTINGS,
    )

    settings = request.app.get(SETTINGS)  # (a bare app, as in the chat shape's tests: defaults)
    timeout_ms = (settings or Settings).stream_write_timeout_ms

    def on_stall() -> None:
        refusals = request.app.get(REFUSALS)
        if refusals is not None:
            refusals[STALL_REASON] += 1
        _LOGGER.info("Dropped a stalled stream of %s %s", request.method, request.path)

    resp = _EventStream(
        request,
        timeout_ms / 1000,
        on_stall,
        status=200,
        headers={**SSE_HEADERS, **(headers or {})},
    )
    await resp.prepare(request)
    return resp
