"""OpenAI-compatible routes under /api/openai/v1 (API-key auth)."""

from __future__ import annotations

import time

from aiohttp import web

from .. import chat
from ..api_auth import require_api_key
from ..errors import ApiError, read_json_object
from ..keys import ENGINE, MODELS, POOL, SETTINGS, USAGE
from ..openai_compat import REASONING_EFFORTS, REASONING_MODES, parse_chat_request
from ..usage import UsageRow

PREFIX = "/api/openai/v1"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer an OpenAI chat completion (streamed or not) from a Codex turn."""
    started = time.monotonic()
    principal = await require_api_key(request)
    settings = request.app[SETTINGS]
    catalog = request.app[MODELS]
    body = await read_json_object(request)
    req = parse_chat_request(body, catalog.resolve)
    account = await request.app[POOL].choose(principal)
    events = request.app[ENGINE].run_turn(
        account.key, account.codex_home, chat.turn_request(req, settings.openai_codex_timeout_ms)
    )
    outcome = chat.TurnOutcome()
    status = 499  # stays so only when the client goes away mid-request
    try:
        if req.stream:
            resp = await chat.stream(request, events, req, outcome)
        else:
            result, outcome = await chat.complete(events, req)
            resp = web.json_response(result)
        status = outcome.status
        return resp
    except ApiError as exc:
        status = exc.status
        outcome.error = exc
        raise
    finally:
        await events.aclose()  # interrupts the turn if it is still running (client gone)
        u = outcome.usage
        request.app[USAGE].record(
            UsageRow(
                ts=time.time(),
                endpoint="chat.completions",
                key_id=principal.key_id,
                key_kind=principal.kind,
                account_user_id=account.user_id,
                model=req.raw_model,
                stream=req.stream,
                status=status,
                error_code=outcome.error.code if outcome.error else None,
                latency_ms=(time.monotonic() - started) * 1000,
                ttft_ms=(outcome.first_token_at - started) * 1000
                if outcome.first_token_at
                else None,
                input_tokens=u.input_tokens if u else None,
                cached_tokens=u.cached_input_tokens if u else None,
                output_tokens=u.output_tokens if u else None,
                reasoning_tokens=u.reasoning_tokens if u else None,
            )
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
    return web.json_response(catalog.as_openai_list())


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
    app.router.add_get(f"{PREFIX}/models", list_models)
    app.router.add_get(f"{PREFIX}/modes", list_modes)
