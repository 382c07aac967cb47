"""Routes as data: each route module lists its routes (method, path, handler, auth, body,
answers) in a `ROUTES` tuple, registers them with `add_routes`, and `openapi.py` builds the
OpenAPI document from the same tuples and the msgspec types they name. A route therefore
cannot be served without being documented, nor documented with a body other than the one its
handler decodes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Who may call a route: OpenAPI security scheme names, any one of which suffices ("" = no
# credentials needed at all, as for a logout that always answers 200).
NONE: tuple[str, ...] = ()
ADMIN = ("adminSession",)
PORTAL = ("portalSession",)
API_KEY = ("apiKey", "apiKeyHeader")
METRICS_TOKEN = ("metricsToken", *ADMIN)


@dataclass(frozen=True)
class Reply:
    """One documented answer: a JSON body of msgspec type `json` (also streamed as
    server-sent events when `stream`), or other media types with their schemas."""

    json: Any = None
    stream: bool = False
    media: Mapping[str, Any] | None = None
    description: str = "OK"


@dataclass(frozen=True)
class Route:
    """One route: what the router serves and what the OpenAPI document says of it.

    `body` is the msgspec type the handler decodes its JSON body into (validate.read_body);
    `answers` maps a status to its Reply (every other status is the OpenAI error body).
    """

    method: str
    path: str
    handler: Handler
    auth: tuple[str, ...]
    summary: str
    tag: str
    answers: Mapping[str, Reply] = field(default_factory=dict)
    body: Any = None
    body_required: bool = True
    params: tuple[dict[str, Any], ...] = ()
    description: str | None = None


def answer(kind: Any, *, stream: bool = False, description: str = "OK") -> dict[str, Reply]:
    """The answers of a route whose success is a 200 with a JSON body of `kind`."""
    return {"200": Reply(kind, stream=stream, description=description)}


HTML = {"200": Reply(media={"text/html": {"type": "string"}}, description="An HTML page")}


def query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    """An optional query parameter."""
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def int_query(name: str, low: int, high: int, default: int) -> dict[str, Any]:
    """An optional whole-number query parameter (validate.whole_number)."""
    return query(
        name,
        {"type": "integer", "minimum": low, "maximum": high, "default": default},
        f"A whole number {low}-{high} (ASCII digits only); anything else is a 400 naming the "
        "parameter.",
    )


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Register routes (a GET also answers HEAD, as aiohttp's add_get does)."""
    for route in routes:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
