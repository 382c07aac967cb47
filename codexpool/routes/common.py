"""Small helpers shared by the cookie-authenticated route modules."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from ..app_keys import SETTINGS
from ..bodies import Credentials
from ..netinfo import client_ip
from ..validate import read_body


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


async def read_credentials(request: web.Request) -> tuple[str, str]:
    """Return (username, password) from a JSON body, or raise a 400 naming the bad field."""
    body = await read_body(request, Credentials)
    return body.username.strip(), body.password
