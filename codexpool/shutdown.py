"""Graceful shutdown: on SIGTERM, running requests get `shutdownGraceSeconds` to finish, then
whatever still runs is interrupted so every stream ends with an error event and `[DONE]`
instead of a cut connection.

aiohttp's `run_app` already stops accepting and waits for handlers (up to `shutdown_timeout`)
before running the cleanup contexts that stop the app-servers. This module adds the step in
between: at the end of the grace period it interrupts the Codex work itself (execute runs and
chat turns), so the handlers write their own final error chunk and return while the connection
is still open. `codexpool serve` sets aiohttp's `shutdown_timeout` a little past the grace so
that happens before aiohttp cancels the handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .app_keys import SETTINGS

_LOGGER = logging.getLogger(__name__)
# Time after the grace for handlers to write their final chunk before aiohttp cancels them.
WRITE_MARGIN_S = 5.0
SHUTDOWN_MESSAGE = "The server is shutting down; the request was interrupted."

# Interrupts one kind of running work with a message; returns how many it interrupted.
Interrupter = Callable[[web.Application, str], int]
INTERRUPTERS = web.AppKey("shutdown_interrupters", list[Interrupter])
_TIMER = web.AppKey("shutdown_timer", list[asyncio.Task[None]])


def add_interrupter(app: web.Application, interrupter: Interrupter) -> None:
    """Register a function that interrupts one kind of running work at the grace deadline."""
    app[INTERRUPTERS].append(interrupter)


async def _interrupt_after_grace(app: web.Application, grace_s: float) -> None:
    await asyncio.sleep(grace_s)
    _LOGGER.warning("Shutdown grace of %ss is over: interrupting running requests", grace_s)
    interrupted = 0
    for interrupter in app[INTERRUPTERS]:
        try:
            interrupted += interrupter(app, SHUTDOWN_MESSAGE)
        except Exception:
            _LOGGER.exception("Shutdown interrupter %r failed", interrupter)
    _LOGGER.info("Interrupted %s running turns and runs", interrupted)


async def _on_shutdown(app: web.Application) -> None:
    """Start the grace timer (not awaited here: aiohttp waits for the handlers after this)."""
    grace = float(app[SETTINGS].shutdown_grace_seconds)
    _LOGGER.info("Shutting down: running requests may finish within %ss", grace)
    app[_TIMER].append(
        asyncio.create_task(_interrupt_after_grace(app, grace), name="shutdown-grace")
    )


async def _timer_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    for task in app[_TIMER]:  # every handler finished early: the timer has nothing to do
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def setup(app: web.Application) -> None:
    """Install the grace timer; call before any `add_interrupter`."""
    app[INTERRUPTERS] = []
    app[_TIMER] = []
    app.on_shutdown.append(_on_shutdown)
    app.cleanup_ctx.append(_timer_ctx)


def serve_shutdown_timeout(grace_s: float) -> float:
    """Return aiohttp's shutdown_timeout for a grace period (grace + time to write the end)."""
    return grace_s + WRITE_MARGIN_S
