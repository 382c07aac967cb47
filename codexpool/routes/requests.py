"""The request log over HTTP: everyone's for the admin, a portal user's own for them."""

from __future__ import annotations

from aiohttp import web

from .. import request_log, sessions
from ..app_keys import STORE, USAGE


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


def setup(app: web.Application) -> None:
    """Register the request log routes (after sessions.setup)."""
    app.router.add_get("/api/admin/requests", admin_requests)
    app.router.add_get("/api/openai/requests", portal_requests)
