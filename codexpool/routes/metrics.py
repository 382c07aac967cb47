"""GET /metrics: Prometheus text format, for the metrics token or a signed-in admin.

Gauges that need the database or the engine (accounts, quota, live codex processes) are read at
scrape time, so they are exact when read and cost nothing between scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..app_keys import (
    CONVERSATIONS,
    ENGINE,
    EXECUTIONS,
    HELD_TURNS,
    METRICS,
    POOL,
    REFUSALS,
    STORE,
    USAGE,
)
from ..errors import ApiError
from ..observe import Metrics
from ..sessions import require_admin
from .common import metrics_token_sent
from .table import METRICS_TOKEN, Reply, Route, add_routes

_LOGGER = logging.getLogger(__name__)


async def _authorize(request: web.Request) -> None:
    """Let the metrics token (Bearer) or an admin session through; 401 otherwise."""
    sent = metrics_token_sent(request)
    if sent is True:
        return
    if sent is False:
        raise ApiError(401, "Wrong metrics token.", "invalid_metrics_token")
    try:
        await require_admin(request)
    except ApiError as exc:
        raise ApiError(
            401,
            "Metrics need `Authorization: Bearer <metricsToken>` or an admin session.",
            "authentication_required",
        ) from exc


async def _refresh_gauges(app: web.Application, metrics: Metrics) -> None:
    """Read the account, quota and process gauges as they are now."""
    pool = app[POOL]
    linked = await pool.linked_accounts()
    metrics.linked_accounts.set(len(linked))
    metrics.eligible_accounts.set(await pool.eligible_count())
    # Warm app-servers and device logins (engine) plus running `codex exec` runs.
    metrics.codex_processes.set(app[ENGINE].live_processes() + app[EXECUTIONS].live())
    rows = await app[STORE].fetchall(
        "SELECT u.username, s.primary_used, s.secondary_used FROM limit_snapshots s "
        "JOIN users u ON u.id = s.user_id"
    )
    metrics.account_remaining.clear()  # deleted accounts must not linger
    for row in rows:
        for window, used in (("5h", row["primary_used"]), ("weekly", row["secondary_used"])):
            if used is not None:
                metrics.account_remaining.labels(row["username"], window).set(
                    max(0.0, 100.0 - float(used))
                )


class _EngineCounters(Collector):
    """App-server starts and recycles, counted by the engine and read at scrape time: frequent
    recycling means accounts reach appServerRecycleMib quickly; starts beyond the first per
    account that are not recycles mean crashes or restarts after an idle stop."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        engine = self._app.get(ENGINE)
        starts = CounterMetricFamily(
            "codexpool_app_server_starts",
            "codex app-server processes started (first use, restarts, recycling).",
        )
        recycles = CounterMetricFamily(
            "codexpool_app_server_recycles",
            "codex app-servers replaced for reaching appServerRecycleMib.",
        )
        starts.add_metric([], engine.starts if engine is not None else 0)
        recycles.add_metric([], engine.recycles if engine is not None else 0)
        yield starts
        yield recycles
        registry = self._app.get(CONVERSATIONS)
        kept = GaugeMetricFamily(
            "codexpool_conversations",
            "Conversations whose thread is kept for their next request (conversations.py).",
        )
        kept.add_metric([], len(registry) if registry is not None else 0)
        yield kept


class _BoundCounters(Collector):
    """What the resource bounds refused, by reason, and the tool turns parked now: a steady
    rise of a refusal reason shows a client (or an attack) pushing against that bound."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "codexpool_refused",
            "Requests and connections refused, or parked turns closed early, by a resource "
            "bound (execute runs, parked turns, device logins, stalled streams, connections).",
            labels=["reason"],
        )
        for reason, count in sorted(self._app.get(REFUSALS, {}).items()):
            refused.add_metric([reason], count)
        yield refused
        held = self._app.get(HELD_TURNS)
        yield GaugeMetricFamily(
            "codexpool_parked_tool_turns",
            "Chat turns waiting for the client's tool results.",
            value=len(held) if held is not None else 0,
        )


async def metrics_handler(request: web.Request) -> web.Response:
    """Answer the Prometheus scrape."""
    await _authorize(request)
    metrics = request.app[METRICS]
    await _refresh_gauges(request.app, metrics)
    body = generate_latest(metrics.registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def _usage_hook_ctx(app: web.Application) -> AsyncIterator[None]:
    """Feed every recorded usage row (chat, execute) into the metrics."""
    app[USAGE].add_listener(app[METRICS].observe_usage)
    yield


ROUTES = (
    Route(
        "GET",
        "/metrics",
        metrics_handler,
        METRICS_TOKEN,
        "Prometheus metrics",
        "ops",
        {"200": Reply(media={"text/plain": {"type": "string"}}, description="Prometheus text")},
    ),
)


def setup(app: web.Application) -> None:
    """Register /metrics, its collectors and the usage hook (the access-log middleware that
    counts requests is in create_app's list).

    Call after the usage writer's cleanup context is registered: the hook needs it running.
    """
    app[METRICS] = Metrics.create()
    app[METRICS].registry.register(_EngineCounters(app))
    app[METRICS].registry.register(_BoundCounters(app))
    app.cleanup_ctx.append(_usage_hook_ctx)
    add_routes(app, ROUTES)
