"""Operator alerts: the watcher's lifetime, and the admin's list (`GET /api/admin/alerts`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

from aiohttp import web

from .. import answers, sessions
from ..alerts import Alerts, PoolState, run_watcher
from ..app_keys import ALERTS, ENGINE, LIMITS, POOL, SETTINGS, STORE, USAGE
from ..config import Settings
from .table import ADMIN, Route, add_routes, answer


def panel_url(settings: Settings) -> str:
    """Return the panel's address for alert links (the setting, else host and port)."""
    if settings.alert_panel_url:
        return settings.alert_panel_url
    host = settings.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (a wildcard names no reachable host)
        host = socket.gethostname()
    return f"http://{host}:{settings.port}/"


async def read_state(app: web.Application) -> PoolState:
    """Collect what the alert conditions read, from the live objects (no codex I/O)."""
    pool = app[POOL]
    candidates = await pool.candidates()
    now = time.time()
    names = {c.user_id: c.username for c in candidates}
    limits = app[LIMITS].snapshot()
    missing = [uid for uid in limits if uid not in names]
    if missing:
        rows = await app[STORE].fetchall(
            f"SELECT id, username FROM users WHERE id IN ({','.join('?' * len(missing))})",
            missing,
        )
        names.update({r["id"]: r["username"] for r in rows})
    return PoolState(
        now=now,
        view=pool.view(now),
        names=names,
        cooldowns=dict(pool.cooldowns),
        limits=limits,
        crashes=list(app[ENGINE].crashes),
        db_failing_since=app[USAGE].failing_since,
    )


async def _alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    alerts = Alerts(
        s.alert_webhook_url, panel_url(s), s.alert_quota_percent, s.alert_database_busy_seconds
    )
    await alerts.start()
    app[ALERTS] = alerts
    task = asyncio.create_task(run_watcher(alerts, lambda: read_state(app)), name="alerts")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await alerts.close()


async def list_alerts(request: web.Request) -> web.Response:
    """Return the newest alerts with their delivery state."""
    await sessions.require_admin(request)
    return web.json_response(request.app[ALERTS].report())


ROUTES = (
    Route(
        "GET",
        "/api/admin/alerts",
        list_alerts,
        ADMIN,
        "The newest operator alerts and their webhook delivery state",
        "admin",
        answer(answers.AlertList),
    ),
)


def setup(app: web.Application) -> None:
    """Register the alert watcher (after the engine, pool and usage lifetimes) and its route."""
    app.cleanup_ctx.append(_alerts_ctx)
    add_routes(app, ROUTES)
