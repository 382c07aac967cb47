"""Operations view of the gateway: one access line per request and Prometheus metrics.

The access line goes to stdout through the `codexpool.access` logger (journald stamps time and
unit), and names the key by its id and the account by its user name, never a key itself. The
metrics live in a per-application `CollectorRegistry`, so two apps in one process (tests) never
share counters. Per-request facts come from the access middleware; token and latency facts from
the usage rows every API handler already records.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .app_keys import METRICS, REQUEST_ID
from .usage import UsageRow

ACCESS_LOGGER = logging.getLogger("codexpool.access")

# The account that served the current request; Pool.choose sets it inside the request's task,
# where the access middleware reads it back once the handler returns.
SERVED_ACCOUNT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "served_account", default=None
)

TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


@dataclass
class Metrics:
    """Every metric the gateway exports, registered in one private registry."""

    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    ttft_seconds: Histogram
    api_requests: Counter
    tokens: Counter
    linked_accounts: Gauge
    eligible_accounts: Gauge
    codex_processes: Gauge
    account_remaining: Gauge
    in_flight: Gauge
    # (metric, label values) -> child: labels() takes a lock and builds keys on every call,
    # and the label sets here are small and bounded (route templates, statuses, endpoints).
    _children: dict[tuple[int, tuple[str, ...]], Any] = field(default_factory=dict)

    def child(self, metric: Any, *values: str) -> Any:
        """Return `metric.labels(*values)`, cached."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    @classmethod
    def create(cls) -> Metrics:
        """Build the metric set in a fresh registry."""
        r = CollectorRegistry(auto_describe=True)
        return cls(
            registry=r,
            requests=Counter(
                "codexpool_http_requests",
                "HTTP requests by route template, method and status.",
                ["route", "method", "status"],
                registry=r,
            ),
            request_seconds=Histogram(
                "codexpool_http_request_duration_seconds",
                "Time from request start to handler return (streams: to the end).",
                ["route"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            ttft_seconds=Histogram(
                "codexpool_time_to_first_token_seconds",
                "Time from request start to the first answer token of a chat turn.",
                ["endpoint"],
                buckets=TTFT_BUCKETS,
                registry=r,
            ),
            api_requests=Counter(
                "codexpool_api_requests",
                "Finished API requests (chat, execute) by endpoint, key kind and status.",
                ["endpoint", "key_kind", "status"],
                registry=r,
            ),
            tokens=Counter(
                "codexpool_tokens",
                "Tokens reported by Codex, by endpoint and kind (input, cached, output, "
                "reasoning).",
                ["endpoint", "kind"],
                registry=r,
            ),
            linked_accounts=Gauge(
                "codexpool_linked_accounts", "Keyed, linked, enabled accounts.", registry=r
            ),
            eligible_accounts=Gauge(
                "codexpool_eligible_accounts",
                "Accounts the master key could use right now.",
                registry=r,
            ),
            codex_processes=Gauge(
                "codexpool_codex_processes", "Live codex child processes.", registry=r
            ),
            account_remaining=Gauge(
                "codexpool_account_remaining_percent",
                "Last known remaining Codex quota per account and window (5h, weekly).",
                ["account", "window"],
                registry=r,
            ),
            in_flight=Gauge(
                "codexpool_http_requests_in_flight", "Requests being handled.", registry=r
            ),
        )

    def observe_usage(self, row: UsageRow) -> None:
        """Fold one finished API request (a usage row) into the counters."""
        self.child(self.api_requests, row.endpoint, row.key_kind or "-", str(row.status)).inc()
        if row.ttft_ms is not None:
            self.child(self.ttft_seconds, row.endpoint).observe(row.ttft_ms / 1000)
        for kind, value in (
            ("input", row.input_tokens),
            ("cached", row.cached_tokens),
            ("output", row.output_tokens),
            ("reasoning", row.reasoning_tokens),
        ):
            if value:
                self.child(self.tokens, row.endpoint, kind).inc(value)


def route_label(request: web.Request) -> str:
    """Return the route template (bounded label set), not the raw path."""
    info = request.match_info
    resource = info.route.resource
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"  # 404/405: raw paths would let clients grow the label set
    return resource.canonical


def access_middleware_factory(
    principal_of: Callable[[web.Request], object | None],
) -> Middleware:
    """Return the middleware that logs one line and counts each request.

    `principal_of` reads the authenticated API key principal (if any) off the request.
    """

    @web.middleware
    async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        token = SERVED_ACCOUNT.set(None)
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.in_flight.inc()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        except BaseException:
            status = 499 if request.transport is None or request.transport.is_closing() else 500
            raise
        finally:
            elapsed = time.monotonic() - started
            account = SERVED_ACCOUNT.get()
            SERVED_ACCOUNT.reset(token)
            principal = principal_of(request)
            key_id = getattr(principal, "key_id", None)
            ACCESS_LOGGER.info(
                "%s %s %s %.1fms key=%s account=%s rid=%s",
                request.method,
                request.path,
                status,
                elapsed * 1000,
                key_id if key_id is not None else "-",
                account or "-",
                request.get(REQUEST_ID, "-"),
            )
            if metrics is not None:
                metrics.in_flight.dec()
                route = route_label(request)
                metrics.child(metrics.requests, route, request.method, str(status)).inc()
                metrics.child(metrics.request_seconds, route).observe(elapsed)

    return access_middleware
