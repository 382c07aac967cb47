"""Small helpers shared by the cookie-authenticated route modules."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from ..app_keys import SETTINGS
from ..errors import ApiError, read_json_object
from ..netinfo import client_ip


def ip_of(request: web.Request) -> str:
    """Return the caller's address (proxy headers only when trusted)."""
    return client_ip(request, request.app[SETTINGS].trusted_proxy)


def metrics_token_sent(request: web.Request) -> bool | None:
    """Tell whether a `Bearer` token sent is the metrics token (None: none sent or none set)."""
    token = request.app[SETTINGS].metrics_token
    auth = request.headers.get("Authorization", "")
    if not token or auth[:7].lower() != "bearer ":
        return None
    return hmac.compare_digest(auth[7:].strip().encode(), token.encode())


def ok(**extra: Any) -> web.Response:
    """Return `{"ok": true, ...}`."""
    return web.json_response({"ok": True, **extra})


async def read_optional_object(request: web.Request) -> dict[str, Any]:
    """Parse a JSON object body, treating an empty body as `{}` (for optional fields)."""
    if not request.body_exists or request.content_length == 0:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    return await read_json_object(request)


async def read_credentials(request: web.Request) -> tuple[str, str]:
    """Return (username, password) from a JSON body, or raise a 400 naming the bad field."""
    body = await read_json_object(request)
    username = body.get("username")
    password = body.get("password")
    if not isinstance(username, str) or not username.strip():
        raise ApiError(
            400, "username is required and must be a string", "invalid_request", param="username"
        )
    if not isinstance(password, str) or not password:
        raise ApiError(
            400, "password is required and must be a string", "invalid_request", param="password"
        )
    if len(username) > 256 or len(password) > 1024:
        raise ApiError(400, "username or password is too long", "invalid_request")
    return username.strip(), password
