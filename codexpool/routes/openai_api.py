"""OpenAI-compatible routes under /api/openai/v1 (API-key auth)."""

from __future__ import annotations

import time

from aiohttp import web

from ..api_auth import require_api_key
from ..app_keys import ENGINE, MODELS, POOL, SETTINGS
from ..errors import ApiError, read_json_object
from ..openai import dispatch
from ..openai import responses as responses_api
from ..openai.responses_writer import ResponsesWriter
from ..openai.tool_kinds import plan_tools
from ..openai.translate import REASONING_EFFORTS, REASONING_MODES, parse_chat_request

PREFIX = "/api/openai/v1"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer an OpenAI chat completion (streamed or not) from a Codex turn."""
    started = time.monotonic()
    principal = await require_api_key(request)
    body = await read_json_object(request)
    req = parse_chat_request(body, request.app[MODELS].resolve)
    return await dispatch.run_chat(
        request, req, endpoint="chat.completions", principal=principal, started=started
    )


async def responses(request: web.Request) -> web.StreamResponse:
    """Answer `POST /v1/responses` through the chat path, shaped as the Responses API."""
    started = time.monotonic()
    principal = await require_api_key(request)
    body = await read_json_object(request)
    plan = plan_tools(body.get("tools"), web_search=request.app[SETTINGS].web_search)
    req = parse_chat_request(responses_api.to_chat_body(body, plan), request.app[MODELS].resolve)
    req.tool_plan = plan
    req.extras["response_echo"] = responses_api.echoed_fields(body)
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise ApiError(
            400,
            "`previous_response_id` must be a string",
            "invalid_request",
            param="previous_response_id",
        )
    return await dispatch.run_chat(
        request,
        req,
        endpoint="responses",
        principal=principal,
        started=started,
        shape=ResponsesWriter,
        previous_response_id=previous,
        keep_response=body.get("store") is not False,
    )


async def list_models(request: web.Request) -> web.Response:
    """List the models clients may ask for (refreshed from Codex `model/list` when due)."""
    principal = await require_api_key(request)
    catalog = request.app[MODELS]
    if catalog.stale:
        try:
            account = await request.app[POOL].choose(principal)
        except ApiError:
            account = None  # no linked account yet: the bundled list still answers
        if account is not None:
            models = await request.app[ENGINE].list_models(account.key, account.codex_home)
            catalog.update(models)
    listing = catalog.as_openai_list()
    if principal.limits.allowed_models is not None:  # a key limited to some models sees those
        listing["data"] = [m for m in listing["data"] if principal.limits.allows_model(m["id"])]
    return web.json_response(listing)


async def list_modes(request: web.Request) -> web.Response:
    """List the named reasoning modes and the Codex effort each maps to."""
    await require_api_key(request)
    modes = [
        {"id": name, "object": "mode", "effort": effort} for name, effort in REASONING_MODES.items()
    ]
    return web.json_response(
        {"object": "list", "data": modes, "reasoning_efforts": list(REASONING_EFFORTS)}
    )


def setup(app: web.Application) -> None:
    """Register the OpenAI-compatible routes."""
    app.router.add_post(f"{PREFIX}/chat/completions", chat_completions)
    app.router.add_post(f"{PREFIX}/responses", responses)
    app.router.add_get(f"{PREFIX}/models", list_models)
    app.router.add_get(f"{PREFIX}/modes", list_modes)
