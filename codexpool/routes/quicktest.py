"""POST /api/openai/codex/execute-session: the portal's quick test box.

One short chat turn on the caller's own account (portal cookie, or an API key: a user key runs
on its owner's account, the master key on the pool), answered exactly like chat completions so
the frontend reuses one parser: a `chat.completion` object, or `chat.completion.chunk` SSE
events ending with `data: [DONE]`.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .. import chat, sessions
from ..accounts import KeyPrincipal
from ..api_auth import extract_key, require_api_key
from ..errors import ApiError, read_json_object
from ..keys import ENGINE, MODELS, POOL, SETTINGS, USAGE
from ..linking import is_linked
from ..models import DEFAULT_ALIAS
from ..openai_compat import ChatRequest
from ..pool import Account
from ..usage import UsageRow

MAX_PROMPT_CHARS = 32_000
DEFAULT_TIMEOUT_MS = 120_000


def parse_quick_request(body: dict[str, Any], resolve_model: Any) -> ChatRequest:
    """Validate `{"prompt", "stream"?, "model"?, "timeoutMs"?}` into a chat request."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "prompt is required and must be a non-empty string", param="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(400, f"prompt is longer than {MAX_PROMPT_CHARS} characters", param="prompt")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", param="stream")
    model = body.get("model") or DEFAULT_ALIAS
    if not isinstance(model, str):
        raise ApiError(400, "model must be a string", param="model")
    timeout_ms = body.get("timeoutMs", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise ApiError(400, "timeoutMs must be a positive whole number", param="timeoutMs")
    return ChatRequest(
        model=resolve_model(model.strip()),
        raw_model=model.strip(),
        prompt=prompt,
        developer_instructions=None,
        effort=None,
        stream=stream,
        include_usage=False,
        timeout_ms=timeout_ms,
        max_tokens=None,
    )


async def _account(request: web.Request) -> tuple[Account, KeyPrincipal | None]:
    """Resolve the caller: an API key when one is sent (never falling back), else the cookie."""
    pool = request.app[POOL]
    if extract_key(request) is not None:
        principal = await require_api_key(request)
        return await pool.choose(principal), principal
    user = await sessions.require_portal_user(request)
    account = pool.account_for(user.id, user.username)
    if not is_linked(account.codex_home):
        raise ApiError(
            403,
            "Your ChatGPT account is not linked yet; link it with the device login first.",
            "account_not_linked",
        )
    return account, None


async def execute_session(request: web.Request) -> web.StreamResponse:
    """Run one quick turn and answer as a chat completion (or a chunk stream)."""
    started = time.monotonic()
    account, principal = await _account(request)
    body = await read_json_object(request)
    req = parse_quick_request(body, request.app[MODELS].resolve)
    settings = request.app[SETTINGS]
    events = request.app[ENGINE].run_turn(
        account.key, account.codex_home, chat.turn_request(req, settings.openai_codex_timeout_ms)
    )
    outcome = chat.TurnOutcome()
    status = 499
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
        await events.aclose()
        u = outcome.usage
        request.app[USAGE].record(
            UsageRow(
                ts=time.time(),
                endpoint="codex.execute-session",
                key_id=principal.key_id if principal else None,
                key_kind=principal.kind if principal else "session",
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


def setup(app: web.Application) -> None:
    """Register the quick-test route (after sessions.setup)."""
    app.router.add_post("/api/openai/codex/execute-session", execute_session)
