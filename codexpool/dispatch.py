"""Run one chat request on an account, failing over to another pool account when it must.

A master-key turn that fails before any byte reached the client because its account hit the
usage limit or lost its login is retried on the next eligible account (at most `MAX_TRIES`
accounts in all); the failed account is cooled down until its reset. Response headers go out
only with the first upstream event, or once the turn stayed silent past the keep-alive interval
(see chat.py), so the client never sees the first failure and nothing has to be buffered.

A turn the backend refused because of its instructions (not Codex's own, see
codex/instructions.py) runs once more on the same account with Codex's own, which the account
then keeps. Exactly one usage row is written per request, naming the account that finally
served it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from . import chat
from .accounts import KeyPrincipal
from .codex.events import TurnError
from .errors import ApiError
from .key_limits import Ticket
from .keys import ENGINE, IMAGE_FETCHER, KEY_QUOTAS, POOL, SETTINGS, USAGE
from .openai_compat import ChatRequest
from .pool import Account
from .tool_turns import HELD_TURNS
from .usage import UsageRow

_LOGGER = logging.getLogger(__name__)

MAX_TRIES = 3
FAILOVER_KINDS = frozenset({"usage_limit", "unauthorized"})


async def run_chat(
    request: web.Request,
    req: ChatRequest,
    *,
    endpoint: str,
    principal: KeyPrincipal | None,
    account: Account | None = None,
    started: float | None = None,
    shape: Any = chat,
) -> web.StreamResponse:
    """Answer a chat request; `account` pins it (portal cookie), else the pool chooses.

    `shape` is the module that writes the answer (`chat`, or `responses_api` for /v1/responses):
    it has `stream(request, events, req, outcome)` and `complete(events, req)`.

    A request whose trailing `role: "tool"` messages answer a parked turn's function calls
    resumes that turn on its account; unknown or expired call ids run a fresh turn from the
    folded conversation, so a client never dead-ends.
    """
    started = time.monotonic() if started is None else started
    app = request.app
    pool, engine, held_turns = app[POOL], app[ENGINE], app[HELD_TURNS]
    turn = chat.turn_request(req, app[SETTINGS].openai_codex_timeout_ms)
    key_id = principal.key_id if principal else None
    resume = (
        held_turns.take([cid for cid, _ in req.tool_results], key_id) if req.tool_results else None
    )
    if resume is not None:
        account = resume.account
        resume.resolve(dict(req.tool_results))
    can_fail_over = account is None and principal is not None and principal.kind == "master"
    served: Account | None = account
    outcome = chat.TurnOutcome()
    status = 499  # stays so only when the client goes away mid-request
    tried: set[int] = set()
    ticket: Ticket | None = None
    fetch_images = resume is None and bool(req.images)  # https images become data URLs
    try:
        if principal is not None:
            ticket = await app[KEY_QUOTAS].admit(
                principal.owner, principal.limits, (req.raw_model, req.model)
            )
        attempt = 0
        same_account = False  # run the next try on `served` again (instructions fallback)
        while True:
            if not same_account:
                attempt += 1
                if account is None:
                    assert principal is not None
                    served = None
                    served = await pool.choose(principal, frozenset(tried))
            assert served is not None
            tried.add(served.user_id)
            if fetch_images:  # once an account can serve it, before the turn takes a slot
                turn = await app[IMAGE_FETCHER].inline(turn, req.image_params)
                fetch_images = False
            outcome = chat.TurnOutcome()
            if resume is not None and attempt == 1 and not same_account:
                events = resume.events
                own_instructions = True  # a parked turn cannot run again
            else:
                own_instructions = same_account or engine.instructions.uses_codex_own(served.key)
                events = engine.run_turn(served.key, served.codex_home, turn)
            same_account = False
            try:
                if req.stream:
                    resp = await shape.stream(request, events, req, outcome)
                else:
                    body, outcome = await shape.complete(events, req)
                    resp = web.json_response(body)
                status = outcome.status
                return resp
            except ApiError as exc:
                # A raised error means nothing reached the client yet (chat.py contract).
                cause = exc.__cause__
                if (
                    isinstance(cause, TurnError)
                    and not own_instructions
                    and engine.instructions.fall_back(served.key, cause)
                ):
                    same_account = True  # once more, with Codex's own instructions
                    continue
                if not isinstance(cause, TurnError) or not pool.mark_failed(served, cause):
                    raise
                if not can_fail_over or cause.kind not in FAILOVER_KINDS:
                    raise
                if attempt == MAX_TRIES:
                    if not pool.view().eligible:
                        raise pool.exhausted_error() from exc
                    raise
                _LOGGER.info(
                    "Account %s failed before any output (%s); failing over (try %s of %s)",
                    served.username,
                    cause.kind,
                    attempt + 1,
                    MAX_TRIES,
                )
            finally:
                if outcome.tool_calls is not None and outcome.error is None:
                    # The model called client functions: keep the turn for their results.
                    held_turns.park(events, outcome.tool_calls, served, key_id)  # type: ignore[arg-type]
                else:
                    await events.aclose()  # interrupts the turn if it is still running
    except ApiError as exc:
        status = exc.status
        outcome.error = exc
        raise
    finally:
        u = outcome.usage
        if ticket is not None:
            ticket.finish(u.input_tokens + u.output_tokens if u else 0)
        app[USAGE].record(
            UsageRow(
                ts=time.time(),
                endpoint=endpoint,
                key_id=principal.key_id if principal else None,
                key_kind=principal.kind if principal else "session",
                account_user_id=served.user_id if served else None,
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
