"""GET /api/openapi.json: the OpenAPI description of every route (no auth; it holds no secret)."""

from __future__ import annotations

import json

from aiohttp import web

from .. import answers
from .table import NONE, Route, add_routes, answer

OPENAPI_JSON = web.AppKey("openapi_json", bytes)


async def openapi_json(request: web.Request) -> web.Response:
    """Answer the document, built once at setup (it depends on nothing that changes)."""
    return web.Response(body=request.app[OPENAPI_JSON], content_type="application/json")


ROUTES = (
    Route(
        "GET",
        "/api/openapi.json",
        openapi_json,
        NONE,
        "This document",
        "ops",
        answer(answers.OpenApiDocument),
    ),
)


def setup(app: web.Application) -> None:
    """Register the document route."""
    from ..openapi import openapi_document  # it reads every route module's ROUTES, this one's

    app[OPENAPI_JSON] = json.dumps(openapi_document(), indent=1).encode()
    add_routes(app, ROUTES)
