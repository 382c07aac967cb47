"""Usage series for the charts (per hour or day, by account or key): admin and portal."""

from __future__ import annotations

from aiohttp import web

from .. import sessions, usage_series
from ..app_keys import STORE, USAGE


async def admin_series(request: web.Request) -> web.Response:
    """Return everyone's usage per bucket (`bucket`, `by`, `count`)."""
    await sessions.require_admin(request)
    bucket, split, count = usage_series.parse(request.query)
    await request.app[USAGE].settle()
    return web.json_response(
        await usage_series.admin_series(request.app[STORE], bucket, split, count)
    )


async def portal_series(request: web.Request) -> web.Response:
    """Return the signed-in user's own usage per bucket (`bucket`, `by`, `count`)."""
    user = await sessions.require_portal_user(request)
    bucket, split, count = usage_series.parse(request.query)
    await request.app[USAGE].settle()
    return web.json_response(
        await usage_series.user_series(request.app[STORE], user.id, bucket, split, count)
    )


def setup(app: web.Application) -> None:
    """Register the usage series routes (after sessions.setup)."""
    app.router.add_get("/api/admin/usage/series", admin_series)
    app.router.add_get("/api/openai/usage/series", portal_series)
