"""The OpenAPI 3.1 description of every route, served at `GET /api/openapi.json`.

Assembled, not written: the operations come from the route modules' `ROUTES` tables
(routes/table.py: method, path, handler, auth, body, answers), and every schema from the
msgspec types those tables name: the request bodies the handlers decode (bodies.py,
openai/bodies.py) and the answers (answers.py). So the document says what the handlers
accept: `required` lists the fields without a default, types and bounds are the ones decoding
checks (a value outside them is a 400 naming the field in `error.param`), and only a body
that refuses unknown fields (key limits) closes `additionalProperties`. Every non-2xx answer
is the OpenAI-style error body (`default` response), whatever the status.

`tests/test_openapi.py` keeps the set of (method, path) equal to the router's, and the fuzz
tests (`tests/test_fuzz_api.py`) send generated requests to the real server and check the
answers against this document.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import msgspec

from . import __version__, answers
from .routes import route_modules
from .routes.table import Route
from .validate import schema_hook

REF = "#/components/schemas/{name}"

SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A user key (runs on its owner's account) or the master key (the pool). "
        "`x-api-key: <key>` works too.",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "adminSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "codexpool_session",
        "description": "The session cookie with an admin sign-in (`POST /api/auth/login`).",
    },
    "portalSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "codexpool_session",
        "description": "The session cookie with a portal sign-in "
        "(`POST /api/openai/auth/login` or `register`).",
    },
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The `metricsToken` setting.",
    },
}

ERROR_RESPONSE: dict[str, Any] = {
    "description": "OpenAI-style error; `error.code` says what went wrong, `error.param` names "
    "the offending field of a 400, `error.source` who produced it (also in the "
    "`x-codexpool-error-source` header). A 429 carries `Retry-After`.",
    "content": {"application/json": {"schema": {"$ref": REF.format(name="Error")}}},
}


def route_table() -> tuple[Route, ...]:
    """Every route of the app, from the route modules' tables."""
    return tuple(route for module in route_modules() for route in module.ROUTES)


def _security(auth: tuple[str, ...]) -> list[dict[str, list[str]]]:
    return [{name: []} if name else {} for name in auth]


def _operation(route: Route, schema_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, reply in route.answers.items():
        content: dict[str, Any] = {}
        if reply.json is not None:
            content["application/json"] = {"schema": schema_of[reply.json]}
        if reply.stream:
            content["text/event-stream"] = {"schema": schema_of[answers.SseEvent]}
        content.update({kind: {"schema": s} for kind, s in (reply.media or {}).items()})
        responses[status] = {"description": reply.description}
        if content:
            responses[status]["content"] = content
    op: dict[str, Any] = {
        "summary": route.summary,
        "tags": [route.tag],
        "security": _security(route.auth),
        "responses": {**responses, "default": {"$ref": "#/components/responses/Error"}},
    }
    if route.description:
        op["description"] = route.description
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": schema_of[route.body]}},
        }
    if route.params:
        op["parameters"] = list(route.params)
    return op


@functools.cache
def _document() -> dict[str, Any]:
    routes = route_table()
    kinds: list[Any] = [answers.Error, answers.SseEvent]
    for route in routes:
        kinds += [r.json for r in route.answers.values() if r.json is not None]
        if route.body is not None:
            kinds.append(route.body)
    kinds = list(dict.fromkeys(kinds))
    schemas, components = msgspec.json.schema_components(
        kinds, schema_hook=schema_hook, ref_template=REF
    )
    schema_of = dict(zip(kinds, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "codexpool",
            "version": __version__,
            "description": "OpenAI-compatible gateway over ChatGPT accounts linked through the "
            "Codex CLI, with an admin panel and a user portal. Every error is "
            '`{"error": {message, type, param, code, source}}`. Static files under '
            "`/static/` and the automatic HEAD twin of every GET are not listed.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {"Error": ERROR_RESPONSE},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document (a fresh copy: callers may change it)."""
    doc = copy.deepcopy(_document())
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


__all__ = ["openapi_document", "route_table"]
