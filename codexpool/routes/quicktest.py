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

from .. import answers, sessions
from ..api_auth import extract_key, require_api_key
from ..app_keys import CLUSTER, MODELS, POOL, RUN_GATE, STORE
from ..bodies import QuickTest
from ..cluster.routing import route, route_account
from ..errors import ApiError
from ..linking import is_linked
from ..openai import dispatch
from ..openai.models import DEFAULT_ALIAS
from ..openai.translate import ChatRequest
from ..selection import Account
from ..users import KeyPrincipal, User, live_key_row
from ..validate import decode, read_body
from .table import API_KEY, PORTAL, Route, add_routes, answer


def parse_quick_request(body: dict[str, Any] | QuickTest, resolve_model: Any) -> ChatRequest:
    """Validate `{"prompt", "stream"?, "model"?, "timeoutMs"?}` into a chat request."""
    if not isinstance(body, QuickTest):
        body = decode(body, QuickTest)
    model = body.model or DEFAULT_ALIAS
    return ChatRequest(
        model=resolve_model(model.strip()),
        raw_model=model.strip(),
        prompt=body.prompt,
        developer_instructions=None,
        effort=None,
        stream=body.stream,
        include_usage=False,
        timeout_ms=int(body.timeoutMs),
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


async def _route(request: web.Request) -> web.StreamResponse | None:
    """Forward to the node that owns the caller's account (cluster mode); None: run here."""
    if CLUSTER not in request.app:
        return None  # a single node: no second key lookup
    if extract_key(request) is not None:
        return await route(request, await require_api_key(request))
    user = await sessions.require_portal_user(request)
    return await route_account(request, user.id)


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
    if (forwarded := await _route(request)) is not None:
        return forwarded  # the caller's account lives on another node (cluster)
    account, principal = await _caller(request)
    body = await read_body(request, QuickTest)
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


ROUTES = (
    Route(
        "POST",
        "/api/openai/codex/execute-session",
        execute_session,
        (*PORTAL, *API_KEY),
        "The portal's quick test: one short chat turn on the caller's account",
        "portal",
        answer(
            answers.ChatCompletion,
            stream=True,
            description="A chat completion, or its chunk stream",
        ),
        body=QuickTest,
        description="When an API key header is sent only the key counts.",
    ),
)


def setup(app: web.Application) -> None:
    """Register the quick-test route (after sessions.setup)."""
    add_routes(app, ROUTES)
