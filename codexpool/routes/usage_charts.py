"""Usage series for the charts (per hour or day, by account or key): admin and portal."""

from __future__ import annotations

from aiohttp import web

from .. import answers, sessions, usage_series
from ..app_keys import STORE, USAGE
from .table import ADMIN, PORTAL, Route, add_routes, answer, query


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


_PARAMS = (
    query("bucket", {"enum": ["hour", "day"]}),
    query("by", {"enum": ["account", "key"]}),
    query(
        "count",
        {"type": "integer", "minimum": 1, "maximum": 366},
        "Buckets: hours 1-168 (default 24), days 1-366 (default 14).",
    ),
)
ROUTES = (
    Route(
        "GET",
        "/api/admin/usage/series",
        admin_series,
        ADMIN,
        "Usage per UTC hour or day, one series per account or key",
        "admin",
        answer(answers.UsageSeries),
        params=_PARAMS,
    ),
    Route(
        "GET",
        "/api/openai/usage/series",
        portal_series,
        PORTAL,
        "The signed-in user's own usage per UTC hour or day",
        "portal",
        answer(answers.UsageSeries),
        params=_PARAMS,
    ),
)


def setup(app: web.Application) -> None:
    """Register the usage series routes (after sessions.setup)."""
    add_routes(app, ROUTES)
