"""OpenAI-compatible routes under /api/openai/v1 (API-key auth)."""

from __future__ import annotations

import time

from aiohttp import web

from .. import answers
from ..api_auth import require_api_key
from ..app_keys import ENGINE, MODELS, POOL, SETTINGS
from ..cluster.routing import route
from ..errors import ApiError
from ..openai import dispatch
from ..openai import responses as responses_api
from ..openai.bodies import ChatBody, ResponsesBody
from ..openai.responses_writer import ResponsesWriter
from ..openai.tool_kinds import plan_tools
from ..openai.translate import REASONING_EFFORTS, REASONING_MODES, parse_chat_request
from ..validate import read_json_object
from .table import API_KEY, Route, add_routes, answer

PREFIX = "/api/openai/v1"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer an OpenAI chat completion (streamed or not) from a Codex turn."""
    started = time.monotonic()
    principal = await require_api_key(request)
    if (forwarded := await route(request, principal)) is not None:
        return forwarded  # the account lives on another node (cluster)
    body = await read_json_object(request)
    req = parse_chat_request(body, request.app[MODELS].resolve)
    return await dispatch.run_chat(
        request, req, endpoint="chat.completions", principal=principal, started=started
    )


async def responses(request: web.Request) -> web.StreamResponse:
    """Answer `POST /v1/responses` through the chat path, shaped as the Responses API."""
    started = time.monotonic()
    principal = await require_api_key(request)
    if (forwarded := await route(request, principal)) is not None:
        return forwarded
    body = await read_json_object(request)
    responses_api.check_body(body)  # the declared body first: types, bounds
    plan = plan_tools(body.get("tools"), web_search=request.app[SETTINGS].web_search)
    chat = responses_api.to_chat_body(body, plan, checked=True)
    req = parse_chat_request(chat, request.app[MODELS].resolve)
    req.tool_plan = plan
    req.extras["response_echo"] = responses_api.echoed_fields(body)
    previous = body.get("previous_response_id")  # a string or None (check_body)
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


ROUTES = (
    Route(
        "POST",
        f"{PREFIX}/chat/completions",
        chat_completions,
        API_KEY,
        "OpenAI chat completion (streamed or not) from one Codex turn",
        "openai",
        answer(
            answers.ChatCompletion,
            stream=True,
            description="A chat completion, or `chat.completion.chunk` events",
        ),
        body=ChatBody,
        description="503 `no_linked_accounts` / `limits_unavailable` when the master key has "
        "no usable account; 429 when the account or pool is spent.",
    ),
    Route(
        "POST",
        f"{PREFIX}/responses",
        responses,
        API_KEY,
        "OpenAI Responses API over the chat path",
        "openai",
        answer(
            answers.ResponseObject,
            stream=True,
            description="A `response` object, or `response.*` events",
        ),
        body=ResponsesBody,
        description="Function and `custom` tools reach the model (custom tools as functions of "
        "one string, called back as `custom_tool_call` items); `web_search` is served when the "
        "`webSearch` setting is on; other hosted tools are dropped, named in the "
        "`x-codexpool-dropped-tools` header and a `warnings` entry.",
    ),
    Route(
        "GET",
        f"{PREFIX}/models",
        list_models,
        API_KEY,
        "The models clients may ask for",
        "openai",
        answer(answers.ModelList),
    ),
    Route(
        "GET",
        f"{PREFIX}/modes",
        list_modes,
        API_KEY,
        "The named reasoning modes and the Codex effort of each",
        "openai",
        answer(answers.ModeList),
    ),
)


def setup(app: web.Application) -> None:
    """Register the OpenAI-compatible routes."""
    add_routes(app, ROUTES)
