"""Run one chat request on an account, failing over to another pool account when it must.

A master-key turn that fails before any byte reached the client because its account hit the
usage limit or lost its login is retried on the next eligible account (at most `MAX_TRIES`
accounts in all); the failed account is cooled down until its reset. Response headers go out
only with the first upstream event, or once the turn stayed silent past the keep-alive interval
(see driver.py), so the client never sees the first failure and nothing has to be buffered.

A turn the backend refused because of its instructions (not Codex's own, see
codex/instructions.py) runs once more on the same account with Codex's own, which the account
then keeps. Exactly one usage row is written per request, naming the account that finally
served it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..app_keys import (
    CONVERSATIONS,
    ENGINE,
    HELD_TURNS,
    IMAGE_FETCHER,
    KEY_QUOTAS,
    POOL,
    REQUEST_ID,
    SETTINGS,
    USAGE,
)
from ..codex.engine import ThreadSlot
from ..codex.events import TurnError, TurnErrorKind
from ..conversations import ThreadRef, extend, prefix_digests
from ..errors import ApiError
from ..key_limits import Ticket
from ..selection import Account
from ..usage import UsageRow
from ..users import KeyPrincipal
from . import chat, driver
from .driver import AnswerWriter, TurnOutcome
from .translate import ChatRequest

_LOGGER = logging.getLogger(__name__)

MAX_TRIES = 3
FAILOVER_KINDS: frozenset[TurnErrorKind] = frozenset({"usage_limit", "unauthorized"})


async def run_chat(
    request: web.Request,
    req: ChatRequest,
    *,
    endpoint: str,
    principal: KeyPrincipal | None,
    account: Account | None = None,
    started: float | None = None,
    shape: Callable[[ChatRequest], AnswerWriter] = chat.ChatWriter,
    previous_response_id: str | None = None,
    keep_response: bool = False,
) -> web.StreamResponse:
    """Answer a chat request; `account` pins it (portal cookie), else the pool chooses.

    `shape` makes the writer of the answer's shape (chat.ChatWriter, or
    responses_writer.ResponsesWriter for /v1/responses); driver.py runs the turn through it.

    A request whose trailing `role: "tool"` messages answer a parked turn's function calls
    resumes that turn on its account; unknown or expired call ids run a fresh turn with the
    whole conversation as its thread's history, so a client never dead-ends.

    A request continuing a remembered conversation (conversations.py) runs on that
    conversation's thread and account while the account is eligible; `previous_response_id`
    (Responses API) prepends the conversation that response ended.
    """
    started = time.monotonic() if started is None else started
    app = request.app
    pool, engine, held_turns = app[POOL], app[ENGINE], app[HELD_TURNS]
    conversations = app[CONVERSATIONS]
    key_id = principal.key_id if principal else None
    scope = (
        f"key:{key_id}" if key_id is not None else f"account:{account.user_id if account else 0}"
    )
    prior: tuple[dict[str, Any], ...] = ()
    if previous_response_id is not None:
        record = await conversations.response(previous_response_id, scope)
        if record is None:
            raise ApiError(
                400,
                f"Previous response with id '{previous_response_id}' not found.",
                "previous_response_not_found",
                param="previous_response_id",
            )
        prior = record.items
    items = prior + req.items
    history = items[: len(prior) + req.input_start]
    tools = req.tools
    if req.tool_plan.web_search:  # a thread with web search is not one without
        tools = (*tools, {"type": "web_search", "mode": req.tool_plan.web_search})
    digests = prefix_digests(scope, req.developer_instructions, tools, items)
    turn = chat.turn_request(req, app[SETTINGS].openai_codex_timeout_ms, history)
    resume = (
        held_turns.take([cid for cid, _ in req.tool_results], key_id) if req.tool_results else None
    )
    match: tuple[int, ThreadRef] | None = None
    if resume is not None:
        account = resume.account
        resume.resolve(dict(req.tool_results))
    else:
        match = await conversations.claim(digests[: len(history) + 1])
    can_fail_over = account is None and principal is not None and principal.kind == "master"
    thread: ThreadRef | None = None
    served: Account | None = account
    outcome = TurnOutcome()
    status = 499  # stays so only when the client goes away mid-request
    tried: set[int] = set()
    ticket: Ticket | None = None
    fetch_images = resume is None  # https images (input and history) become data URLs
    try:
        if principal is not None:
            if resume is not None:
                resume.release_ticket()  # this request takes the parked turn's place over
            try:
                ticket = await held_turns.admit(
                    app[KEY_QUOTAS], principal.owner, principal.limits, (req.raw_model, req.model)
                )
            except BaseException:
                if resume is not None:
                    await resume.events.aclose()  # refused: the resumed turn must not linger
                raise
        attempt = 0
        same_account = False  # run the next try on `served` again (instructions fallback)
        while True:
            if not same_account:
                attempt += 1
                if account is None:
                    assert principal is not None
                    served = None
                    prefer = match[1].account_id if match is not None else None
                    served = await pool.choose(principal, frozenset(tried), prefer=prefer)
            assert served is not None
            tried.add(served.user_id)
            if fetch_images:  # once an account can serve it, before the turn takes a slot
                turn = await app[IMAGE_FETCHER].inline(
                    turn, req.image_refs, fallback_param="previous_response_id"
                )
                fetch_images = False
            outcome = TurnOutcome()
            resumed = resume is not None and attempt == 1 and not same_account
            slot = ThreadSlot()
            if resumed:
                assert resume is not None
                events = resume.events
                own_instructions = True  # a parked turn cannot run again
            else:
                if match is not None:
                    known, ref = match
                    match = None  # one try: a failover or fallback runs on a new thread
                    if ref.account_key == served.key:
                        slot = ThreadSlot(ref.thread_id, known)
                    else:  # its account cannot serve now: the history moves to a new thread
                        conversations.discard(ref)
                own_instructions = same_account or engine.instructions.uses_codex_own(served.key)
                await held_turns.make_room(engine, served)  # parked turns yield their slots
                events = engine.run_turn(
                    served.key, served.codex_home, dataclasses.replace(turn, thread=slot)
                )
            same_account = False
            answered = False
            try:
                writer = shape(req)
                if req.stream:
                    resp = await driver.stream(request, events, writer, outcome)
                else:
                    body = await driver.complete(events, writer, outcome)
                    resp = web.json_response(body, headers=writer.headers())
                status = outcome.status
                answered = outcome.error is None
                return resp
            except ApiError as exc:
                # A raised error means nothing reached the client yet (driver.py contract).
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
                if resumed:
                    thread = resume.thread if resume is not None else None
                elif slot.thread_id is not None:
                    thread = ThreadRef(served.user_id, served.key, slot.thread_id)
                else:
                    thread = None
                if answered and keep_response and outcome.response_id:
                    await conversations.remember_response(
                        outcome.response_id, scope, items + answer_items(outcome)
                    )
                if answered and outcome.tool_calls is not None:
                    # The model called client functions: keep the turn for their results; it
                    # keeps this request's place in the key's concurrency until then.
                    u = outcome.usage
                    await held_turns.park(
                        events,
                        outcome.tool_calls,
                        served,
                        key_id,
                        thread,
                        owner=principal.owner if principal else None,
                        ticket=ticket,
                        tokens=u.input_tokens + u.output_tokens if u else 0,
                    )
                    ticket = None
                else:
                    await events.aclose()  # interrupts the turn if it is still running
                    if thread is not None and answered:
                        answer = answer_items(outcome)
                        await conversations.remember(extend(digests[-1], answer), thread)
                    elif thread is not None:  # failed or cut short: its history is not sure
                        conversations.discard(thread)
    except ApiError as exc:
        status = exc.status
        outcome.error = exc
        raise
    finally:
        if match is not None:  # never reached its turn (key quota, no account): put it back
            await conversations.remember(digests[match[0]], match[1])
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
                request_id=request.get(REQUEST_ID),
                effort=req.effort,
                error_source=outcome.error.source if outcome.error else None,
                error_message=outcome.error.message if outcome.error else None,
                key_user_id=principal.user_id if principal else None,
            )
        )


def answer_items(outcome: TurnOutcome) -> tuple[dict[str, Any], ...]:
    """Return the answer as the Responses items a client's next request repeats it with.

    Built as translate.conversation_items builds an assistant message, so the digest of
    the conversation a client sends back matches the one remembered here: function names
    stay as the model saw them (tool_names.alias), as conversation_items writes them.
    """
    text = "".join(outcome.text)
    calls = outcome.tool_calls.calls if outcome.tool_calls is not None else ()
    items: list[dict[str, Any]] = []
    if text or not calls:
        items.append(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text}],
            }
        )
    items += [
        {"type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments}
        for c in calls
    ]
    return tuple(items)
