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

from .. import sessions
from ..api_auth import extract_key, require_api_key
from ..app_keys import MODELS, POOL, RUN_GATE, STORE
from ..errors import ApiError, read_json_object
from ..linking import is_linked
from ..openai import dispatch
from ..openai.models import DEFAULT_ALIAS
from ..openai.translate import ChatRequest, json_int
from ..selection import Account
from ..users import KeyPrincipal, User, live_key_row

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
    timeout_ms = json_int(body.get("timeoutMs", DEFAULT_TIMEOUT_MS))
    if timeout_ms is None or timeout_ms <= 0:
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


async def _caller(request: web.Request) -> tuple[Account | None, KeyPrincipal | None]:
    """Resolve the caller: an API key when one is sent (never falling back), else the cookie.

    A key leaves the account to the pool (owner's account, or any eligible one with failover
    for the master key); the cookie pins the signed-in user's own account and is admitted and
    counted under the user's own key.
    """
    if extract_key(request) is not None:
        return None, await require_api_key(request)
    user = await sessions.require_portal_user(request)
    account = request.app[POOL].account_for(user.id, user.username)
    if not is_linked(account.codex_home):
        raise ApiError(
            403,
            "Your ChatGPT account is not linked yet; link it with the device login first.",
            "account_not_linked",
        )
    request.app[POOL].ensure_not_exhausted(user.id, "Your ChatGPT account")
    return account, await _own_key(request, user)


async def _own_key(request: web.Request, user: User) -> KeyPrincipal | None:
    """Return the signed-in user's live key, whose limits and counts the quick test shares.

    Without this the cookie was a way around the caps the admin set on the key (requests per
    day, allowed models, concurrency) and its turns counted nowhere. A user without a key has
    no caps to honour.
    """
    row = await live_key_row(request.app[STORE], user_id=user.id, kind="user")
    if row is None:
        return None
    return KeyPrincipal(row["id"], "user", user.id, user.username, row["limits"])


async def execute_session(request: web.Request) -> web.StreamResponse:
    """Run one quick turn and answer as a chat completion (or a chunk stream)."""
    started = time.monotonic()
    account, principal = await _caller(request)
    body = await read_json_object(request)
    req = parse_quick_request(body, request.app[MODELS].resolve)
    # The execute gate's one-run-per-key rule (a cookie counts as its user's key slot); a
    # quick test starts no process, so it takes none of the gateway's execute run places.
    if principal is not None:
        owner = principal.owner
    else:
        assert account is not None  # _caller pins the cookie user's own account
        owner = ("user", account.user_id)
    run_pass = request.app[RUN_GATE].enter(owner, spawns_process=False)
    try:
        return await dispatch.run_chat(
            request,
            req,
            endpoint="codex.execute-session",
            principal=principal,
            account=account,
            started=started,
        )
    finally:
        run_pass.release()


def setup(app: web.Application) -> None:
    """Register the quick-test route (after sessions.setup)."""
    app.router.add_post("/api/openai/codex/execute-session", execute_session)
