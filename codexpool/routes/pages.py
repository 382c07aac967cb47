"""The web pages: admin panel (`/`), its sign-in (`/login`), the portal (`/openai`) and static
files, served with a Content-Security-Policy that allows no inline script."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import ApiError
from ..sessions import require_admin
from .table import HTML, NONE, Reply, Route, add_routes

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _page(name: str) -> web.FileResponse:
    resp = web.FileResponse(
        WEB_ROOT / name, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    )
    return resp


async def admin_page(request: web.Request) -> web.StreamResponse:
    """Serve the admin panel, or send a visitor without an admin session to /login."""
    try:
        await require_admin(request)
    except ApiError:
        raise web.HTTPFound("/login") from None
    return _page("index.html")


async def login_page(request: web.Request) -> web.StreamResponse:
    """Serve the admin sign-in page."""
    return _page("login.html")


async def portal_page(request: web.Request) -> web.StreamResponse:
    """Serve the portal (it asks for sign-in itself)."""
    return _page("openai.html")


@web.middleware
async def static_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Add the security headers to static files too (create_app places this middleware)."""
    resp = await handler(request)
    if request.path.startswith("/static/"):
        resp.headers.update(SECURITY_HEADERS)
    return resp


ROUTES = (
    Route(
        "GET",
        "/",
        admin_page,
        NONE,
        "The admin panel (302 to /login without an admin session)",
        "pages",
        {**HTML, "302": Reply(description="To /login")},
    ),
    Route("GET", "/login", login_page, NONE, "The admin sign-in page", "pages", HTML),
    Route("GET", "/openai", portal_page, NONE, "The portal page", "pages", HTML),
)


def setup(app: web.Application) -> None:
    """Register the pages and the static folder."""
    add_routes(app, ROUTES)
    app.router.add_static("/static/", WEB_ROOT, follow_symlinks=False, append_version=False)
