"""GET /api/openapi.json: the OpenAPI description of every route (no auth; it holds no secret)."""

from __future__ import annotations

import json

from aiohttp import web

from ..openapi import openapi_document

OPENAPI_JSON = web.AppKey("openapi_json", bytes)


async def openapi_json(request: web.Request) -> web.Response:
    """Answer the document, built once at setup (it depends on nothing that changes)."""
    return web.Response(body=request.app[OPENAPI_JSON], content_type="application/json")


def setup(app: web.Application) -> None:
    """Register the document route."""
    app[OPENAPI_JSON] = json.dumps(openapi_document(), indent=1).encode()
    app.router.add_get("/api/openapi.json", openapi_json)
