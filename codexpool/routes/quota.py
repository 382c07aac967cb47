"""Quota history over HTTP (admin session): each account's used-percent over time."""

from __future__ import annotations

from aiohttp import web

from .. import answers, quota_history, sessions
from ..app_keys import LIMITS, SETTINGS, STORE
from ..errors import ApiError
from ..validate import whole_number
from .table import ADMIN, Route, add_routes, answer, query

MAX_HOURS_CAP = 24 * 366


async def quota_history_route(request: web.Request) -> web.Response:
    """Return the 5-hour and weekly used-percent of one account (`account=ID` or a username)
    or of every account, over the last `hours` (default 24), with projections."""
    await sessions.require_admin(request)
    app = request.app
    store = app[STORE]
    max_hours = min(MAX_HOURS_CAP, app[SETTINGS].usage_retention_days * 24)
    hours = whole_number(
        request.query.get("hours", str(quota_history.DEFAULT_HOURS)), "hours", 1, max_hours
    )
    user_id = None
    raw = request.query.get("account")
    if raw is not None:
        if raw.isascii() and raw.isdigit() and len(raw) <= 18:
            row = await store.fetchone("SELECT id FROM users WHERE id = ?", (int(raw),))
        else:
            row = await store.fetchone("SELECT id FROM users WHERE username = ?", (raw.casefold(),))
        if row is None:
            raise ApiError(404, f"No account {raw[:64]!r}.", "user_not_found", param="account")
        user_id = int(row["id"])
    report = await quota_history.report(store, app[LIMITS].snapshot(), hours, user_id)
    return web.json_response(report)


ROUTES = (
    Route(
        "GET",
        "/api/admin/quota-history",
        quota_history_route,
        ADMIN,
        "Each account's 5-hour and weekly used-percent over time, with projections",
        "admin",
        answer(answers.QuotaHistory),
        params=(
            query(
                "hours",
                {"type": "integer", "minimum": 1, "default": 24},
                "1 to usageRetentionDays x 24 (ASCII digits only).",
            ),
            query("account", {"type": "string"}, "An account's user id or username; 404 if none."),
        ),
    ),
)


def setup(app: web.Application) -> None:
    """Register the quota history route (after sessions.setup)."""
    add_routes(app, ROUTES)
