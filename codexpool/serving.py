"""Serve the app (`codexpool serve`): aiohttp's run_app loop, plus two bounds on connections.

Every open connection costs a file descriptor. Under the usual soft limit of 1,024 open files,
1,100 idle sockets once left the process unable to accept anything: `accept()` failed with
EMFILE and even `/api/health` went unanswered. So at start the soft open-file limit is raised
to the hard limit, and connections beyond `maxConnections` (lowered, if need be, to leave
`FD_RESERVE` descriptors for codex's pipes, the database and logs) are answered with a short
503 and closed at once, while the connections already open keep working. aiohttp closes a
connection that stays idle for its keep-alive timeout (75 s), so a flood of idle sockets
drains by itself and new connections are accepted again.

aiohttp has no connection cap, and run_app builds its own runner, so this module runs the same
loop as run_app with a runner whose protocol factory (what the listening socket calls for each
accepted connection) checks the count first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
from collections import Counter
from typing import Any, cast

from aiohttp import web

from .app_keys import REFUSALS

_LOGGER = logging.getLogger(__name__)

# Descriptors kept for everything but client connections: codex app-servers and execute runs
# (3 pipes each), device logins, SQLite (database, WAL, shared memory, per connection), log
# files, plus one listen backlog of connections accepted in the same loop iteration before
# the count sees them.
FD_RESERVE = 384
UNLIMITED_TARGET = 1 << 20  # soft limit to ask for when the hard limit is "unlimited"
REFUSAL_REASON = "max_connections"


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            _LOGGER.warning("Could not raise the open-file limit from %s: %s", soft, exc)
    return UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else soft


def effective_max_connections(max_connections: int, open_file_limit: int) -> int:
    """Return the cap to enforce: the setting, lowered to leave FD_RESERVE descriptors free."""
    room = max(1, open_file_limit - FD_RESERVE)
    if room < max_connections:
        _LOGGER.warning(
            "maxConnections %s lowered to %s: the open-file limit is %s (raise it with "
            "LimitNOFILE= in the systemd unit or `ulimit -n`)",
            max_connections,
            room,
            open_file_limit,
        )
    return min(max_connections, room)


def _refusal_response() -> bytes:
    body = json.dumps(
        {
            "error": {
                "message": "The server has too many open connections; retry shortly.",
                "type": "service_unavailable_error",
                "param": None,
                "code": "too_many_connections",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


REFUSAL = _refusal_response()


class _Refused(asyncio.Protocol):
    """A connection over the cap: a 503, then closed (what it sends is never read)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)  # a TCP transport (uvloop or asyncio)
        writer.write(REFUSAL)
        writer.close()


class ConnectionCap:
    """The protocol factory of the listening socket: aiohttp's, until `limit` are open."""

    def __init__(self, server: web.Server, limit: int, refusals: Counter[str]) -> None:
        self.server = server
        self.limit = limit
        self._refusals = refusals

    def __call__(self) -> asyncio.BaseProtocol:
        """Return the protocol for one accepted connection."""
        if len(self.server.connections) >= self.limit:
            self._refusals[REFUSAL_REASON] += 1
            if self._refusals[REFUSAL_REASON] % 1000 == 1:  # one line per burst, not per socket
                _LOGGER.warning("Refusing connections: %s are open (maxConnections)", self.limit)
            return _Refused()
        return self.server()


class _CappedRunner(web.AppRunner):
    """An AppRunner whose sites listen through a ConnectionCap."""

    def __init__(
        self, app: web.Application, limit: int, refusals: Counter[str], **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._limit = limit
        self._refusals = refusals
        self._cap: ConnectionCap | None = None

    @property
    def server(self) -> Any:  # sites only call it: a protocol factory is all they need
        """Return the capped protocol factory (None before setup(), as aiohttp's)."""
        server = super().server
        if server is None:
            return None
        if self._cap is None or self._cap.server is not server:
            self._cap = ConnectionCap(server, self._limit, self._refusals)
        return self._cap


async def _serve(
    app: web.Application, host: str, port: int, max_connections: int, **kwargs: Any
) -> None:
    runner = _CappedRunner(app, max_connections, app[REFUSALS], **kwargs)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()  # until SIGTERM/SIGINT (GracefulExit) or cancellation
    finally:
        await runner.cleanup()


def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    loop: asyncio.AbstractEventLoop,
    max_connections: int,
    **kwargs: Any,
) -> None:
    """Run the app until SIGINT/SIGTERM, as web.run_app does, with the connection bounds.

    `kwargs` go to the AppRunner (handler_cancellation, access_log, shutdown_timeout, ...).
    """
    limit = effective_max_connections(max_connections, raise_open_file_limit())
    main = loop.create_task(
        _serve(app, host, port, limit, handle_signals=True, **kwargs), name="serve"
    )
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and await what is still running (as asyncio.run does on its way out)."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
