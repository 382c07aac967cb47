"""The CSRF guard of the cookie-authenticated routes (admin panel, portal).

A state change (POST, PUT, PATCH, DELETE) on a cookie route group is refused with a 403 when
the browser marks the request as coming from another site (`Sec-Fetch-Site: cross-site`) or
its `Origin` is not this server's own. Requests without an `Origin` are not browsers riding a
victim's cookie (curl, scripts) and pass; so does a request that authenticates by a valid API
key alone on a route that takes one (a cross-site page cannot know the key).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from .api_auth import extract_key, require_api_key
from .app_keys import SETTINGS
from .errors import ApiError
from .netinfo import public_host

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Cookie-authenticated route groups whose state changes need a same-origin request.
CSRF_PREFIXES = (
    "/api/auth/",
    "/api/admin/",
    "/api/openai/auth/",
    "/api/openai/keys/",
    "/api/openai/codex/",
    "/api/openai/pool/",
)
# Routes inside CSRF_PREFIXES that also take an API key (which then wins over the cookie).
KEY_OR_COOKIE_ROUTES = frozenset({"/api/openai/codex/execute-session"})


def _host_port(authority: str) -> tuple[str, str]:
    """Split host[:port] and drop default web ports so equal origins compare equal."""
    url = URL(f"http://{authority}")
    port = url.explicit_port
    return (url.raw_host or "").lower(), "" if port in (None, 80, 443) else str(port)


def is_cross_site(request: web.Request, trusted_proxy: bool) -> bool:
    """Tell whether a browser marked this request as coming from another site or origin."""
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not a browser (curl, scripts): they cannot ride a victim's cookie
    try:
        url = URL(origin)
        if not url.absolute or url.raw_host is None:
            return True  # "null" and other opaque origins
        port = url.explicit_port
        theirs = (url.raw_host.lower(), "" if port in (None, 80, 443) else str(port))
        return theirs != _host_port(public_host(request, trusted_proxy))
    except ValueError:
        return True


async def authenticated_by_key(request: web.Request) -> bool:
    """Tell whether this request is one that authenticates by a valid API key alone.

    Only such a request may skip the CSRF guard: a cross-site attacker cannot know the key. A
    bare `Authorization` or `x-api-key` header proves nothing (`Authorization: Basic ...` with
    the victim's cookie used to pass), and admin and portal routes never take a key at all.
    """
    if request.path not in KEY_OR_COOKIE_ROUTES or extract_key(request) is None:
        return False
    try:
        await require_api_key(request)  # the handler then uses this key, never the cookie
    except ApiError:
        return False
    return True


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reject cross-site state changes on cookie-authenticated route groups with a 403."""
    if (
        request.method in UNSAFE_METHODS
        and request.path.startswith(CSRF_PREFIXES)
        and is_cross_site(request, request.app[SETTINGS].trusted_proxy)
        and not await authenticated_by_key(request)
    ):
        raise ApiError(
            403,
            "Cross-site request rejected: this route only accepts same-origin requests.",
            "csrf_rejected",
        )
    return await handler(request)
