"""The request log over HTTP: everyone's for the admin, a portal user's own for them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import answers, request_log, sessions
from ..app_keys import STORE, USAGE
from .table import ADMIN, PORTAL, Route, add_routes, answer, int_query, query


async def admin_requests(request: web.Request) -> web.Response:
    """Return a page of every request, newest first (filters: user, account, status, since,
    until; paging: limit, cursor)."""
    await sessions.require_admin(request)
    store = request.app[STORE]
    filters = await request_log.parse_filters(store, request.query, admin=True)
    await request.app[USAGE].settle()  # the request that just finished is on the page
    return web.json_response(await request_log.admin_page(store, filters))


async def portal_requests(request: web.Request) -> web.Response:
    """Return a page of the signed-in user's requests: made with their key or served by their
    account (filters: status, since, until; paging: limit, cursor)."""
    user = await sessions.require_portal_user(request)
    store = request.app[STORE]
    filters = await request_log.parse_filters(store, request.query, admin=False)
    await request.app[USAGE].settle()
    return web.json_response(await request_log.user_page(store, user.id, filters))


def _log_params(admin: bool) -> tuple[dict[str, Any], ...]:
    """The request log's query parameters (admin: also whose key and which account)."""
    who = (
        tuple(
            query(
                "user" if i == 0 else "account",
                {"type": "string"},
                f"Username {what}; 404 `user_not_found` if none.",
            )
            for i, what in enumerate(("whose key made it", "which account served it"))
        )
        if admin
        else ()
    )
    return (
        *who,
        query("status", {"enum": ["2xx", "4xx", "5xx"]}),
        *(
            query(
                name,
                {"type": "string"},
                "Unix seconds or an ISO 8601 time (UTC without an offset).",
            )
            for name in ("since", "until")
        ),
        int_query("limit", 1, request_log.MAX_LIMIT, request_log.DEFAULT_LIMIT),
        query("cursor", {"type": "string"}, "`nextCursor` of the previous page."),
    )


_LOG_NOTE = "Newest first. 400 for an unknown parameter or a bad value."
ROUTES = (
    Route(
        "GET",
        "/api/admin/requests",
        admin_requests,
        ADMIN,
        "The request log: every request, newest first",
        "admin",
        answer(answers.RequestPage),
        params=_log_params(admin=True),
        description=_LOG_NOTE,
    ),
    Route(
        "GET",
        "/api/openai/requests",
        portal_requests,
        PORTAL,
        "The user's own requests (their key's and their account's), newest first",
        "portal",
        answer(answers.RequestPage),
        params=_log_params(admin=False),
        description=_LOG_NOTE,
    ),
)


def setup(app: web.Application) -> None:
    """Register the request log routes (after sessions.setup)."""
    add_routes(app, ROUTES)
