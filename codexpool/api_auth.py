"""API-key authentication for the OpenAI-compatible routes (Bearer or x-api-key)."""

from __future__ import annotations

from aiohttp import web

from .app_keys import KEY_CACHE, PRINCIPAL
from .errors import ApiError
from .users import KeyPrincipal

MAX_KEY_LEN = 256


def extract_key(request: web.Request) -> str | None:
    """Return the key a client sent, from `Authorization: Bearer` or `x-api-key`."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key", "").strip() or None


async def require_api_key(request: web.Request) -> KeyPrincipal:
    """Return the key's principal or raise 401 with OpenAI's `invalid_api_key` code."""
    key = extract_key(request)
    if key is None:
        raise ApiError(
            401,
            "Missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`.",
            "missing_api_key",
        )
    principal = None
    if len(key) <= MAX_KEY_LEN and key.isascii():
        principal = await request.app[KEY_CACHE].lookup(key)
    if principal is None:
        raise ApiError(401, "Incorrect API key provided.", "invalid_api_key")
    request[PRINCIPAL] = principal
    return principal
