"""POST /api/openai/v1/codex/execute: one agentic Codex run in a folder of the server.

Thin: validation and command building live in `codexpool.execute`, the process in
`codexpool.execrun`. Off unless `executeEnabled`; the key's account runs it (the master key:
the pool's next account).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from aiohttp import web

from .. import answers, shutdown
from ..api_auth import require_api_key
from ..app_keys import (
    CODEX_BIN,
    EXECUTIONS,
    ISOLATION,
    KEY_QUOTAS,
    POOL,
    REQUEST_ID,
    RUN_GATE,
    SETTINGS,
    USAGE,
)
from ..bodies import EXECUTE_CODES, ExecuteRun
from ..cluster.routing import route
from ..codex.events import TurnError, TurnErrorKind
from ..errors import ApiError
from ..execrun import ExecStopped, Executions
from ..execute import ExecResult, exec_argv, parse_execute_request
from ..openai import sse
from ..usage import UsageRow
from ..validate import read_body
from .openai_api import PREFIX
from .table import API_KEY, Route, add_routes, answer


def _stopped_error(exc: ExecStopped) -> ApiError:
    if exc.kind == "timeout":
        return ApiError(504, f"{exc.message}; the run was stopped.", "timeout")
    if exc.kind == "unavailable":
        return ApiError(503, exc.message, "codex_unavailable")
    return ApiError(503, exc.message, "server_shutting_down")


_COOLDOWN_KINDS: dict[str | None, TurnErrorKind] = {
    "usage_limit_reached": "usage_limit",
    "account_unauthorized": "unauthorized",
}


async def execute(request: web.Request) -> web.StreamResponse:
    """Run `codex exec --json` and answer its final message, items and usage."""
    started = time.monotonic()
    principal = await require_api_key(request)
    settings = request.app[SETTINGS]
    if not settings.execute_enabled:
        raise ApiError(
            403,
            "The execute endpoint is disabled on this server (setting executeEnabled).",
            "execute_disabled",
        )
    if (forwarded := await route(request, principal)) is not None:
        return forwarded  # the account lives on another node (cluster)
    body = await read_body(request, ExecuteRun, codes=EXECUTE_CODES)
    req = parse_execute_request(body, settings)
    codex_bin = request.app[CODEX_BIN]
    if not codex_bin:
        raise ApiError(503, "No codex binary on this server; run install.sh.", "codex_missing")
    # One run per key and executeMaxConcurrent in all, checked before anything counts.
    run_pass = request.app[RUN_GATE].enter(principal.owner)
    try:
        ticket = await request.app[KEY_QUOTAS].admit(
            principal.owner, principal.limits, (req.model or "codex",)
        )
    except BaseException:
        run_pass.release()
        raise
    try:
        account = await request.app[POOL].choose(principal)
    except BaseException:
        ticket.finish()
        run_pass.release()
        raise
    result = ExecResult()
    status, error_code = 499, None  # stay so only when the client goes away mid-run
    failure: ApiError | None = None
    events: AsyncGenerator[dict[str, Any], None] = request.app[EXECUTIONS].events(
        exec_argv(codex_bin, req, settings),
        req.prompt,
        account.codex_home,
        req.timeout_s,
        cwd=req.cwd,
        writable=settings.execute_sandbox != "read-only",
    )
    resp: web.StreamResponse | None = None
    try:
        try:
            if req.stream:
                resp = await sse.open_stream(request)
            async for event in events:
                result.take(event, time.monotonic())
                if resp is not None and event.get("type") != "exit":
                    await resp.write(sse.encode(event))
            failure = result.failure()
        except ExecStopped as exc:
            failure = _stopped_error(exc)
        status, error_code = (failure.status, failure.code) if failure else (200, None)
        if failure is not None and failure.code in _COOLDOWN_KINDS:
            # No failover for an agentic run (it may have acted), but the pool learns.
            kind = _COOLDOWN_KINDS[failure.code]
            request.app[POOL].mark_failed(account, TurnError(kind, failure.message))
        if resp is None:
            if failure:
                raise failure
            return web.json_response(result.body())
        if failure:  # headers are gone: an error event the client can read, then [DONE]
            await resp.write(sse.encode(failure.body()))
        else:
            await resp.write(sse.encode({"type": "result", **result.body()}))
        await resp.write(sse.DONE)
        await resp.write_eof()
        return resp
    finally:
        try:
            await events.aclose()  # ends the process group if the run is still going
        finally:
            run_pass.release()
        tokens = result.token_counts()
        ticket.finish((tokens[0] or 0) + (tokens[2] or 0))
        request.app[USAGE].record(
            UsageRow(
                ts=time.time(),
                endpoint="codex.execute",
                key_id=principal.key_id,
                key_kind=principal.kind,
                account_user_id=account.user_id,
                model=req.model,
                stream=req.stream,
                status=status,
                error_code=error_code,
                latency_ms=(time.monotonic() - started) * 1000,
                ttft_ms=(result.first_item_at - started) * 1000 if result.first_item_at else None,
                input_tokens=tokens[0],
                cached_tokens=tokens[1],
                output_tokens=tokens[2],
                reasoning_tokens=tokens[3],
                request_id=request.get(REQUEST_ID),
                error_source=failure.source if failure else None,
                error_message=failure.message if failure else None,
                key_user_id=principal.user_id,
            )
        )


async def _executions_ctx(app: web.Application) -> AsyncIterator[None]:
    executions = Executions(app[SETTINGS].codex_state_path, app.get(ISOLATION))
    app[EXECUTIONS] = executions
    yield
    await executions.close()


ROUTES = (
    Route(
        "POST",
        f"{PREFIX}/codex/execute",
        execute,
        API_KEY,
        "One agentic `codex exec` run in an allowed folder (off unless executeEnabled)",
        "openai",
        answer(
            answers.ExecuteResult,
            stream=True,
            description="The run's final message, items and usage, or its events",
        ),
        body=ExecuteRun,
        description="403 `execute_disabled` unless the server enables it.",
    ),
)


def setup(app: web.Application) -> None:
    """Register the execute route and the lifetime of its runs."""
    app.cleanup_ctx.append(_executions_ctx)
    shutdown.add_interrupter(app, lambda a, message: a[EXECUTIONS].stop_all(message))
    add_routes(app, ROUTES)
