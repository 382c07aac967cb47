"""Usage aggregates over the `requests` table: per UTC day, per account and per key.

The admin sees everyone's; a portal user sees the requests made with their own keys and the
requests their account served (their own and the pool's). Days are UTC calendar days
(`YYYY-MM-DD`), newest first.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .store import Store
from .validate import whole_number

DEFAULT_DAYS = 7
MAX_DAYS = 366

_SUMS = """
COUNT(*) AS requests,
COALESCE(SUM(CASE WHEN r.status >= 400 THEN 1 ELSE 0 END), 0) AS errors,
COALESCE(SUM(r.input_tokens), 0) AS input_tokens,
COALESCE(SUM(r.cached_tokens), 0) AS cached_tokens,
COALESCE(SUM(r.output_tokens), 0) AS output_tokens,
COALESCE(SUM(r.reasoning_tokens), 0) AS reasoning_tokens,
AVG(r.latency_ms) AS avg_latency_ms,
AVG(r.ttft_ms) AS avg_ttft_ms
"""


def _day(store: Store) -> str:
    return f"{store.sql.utc_day('r.ts')} AS day"


def parse_days(request: web.Request) -> int:
    """Return `?days=N` (1-366, default 7) or raise a 400 naming the parameter."""
    return whole_number(request.query.get("days", str(DEFAULT_DAYS)), "days", 1, MAX_DAYS)


def since(days: int, now: float | None = None) -> float:
    """Return the start (Unix seconds) of the UTC day `days - 1` days before today."""
    now = time.time() if now is None else now
    today = now - now % 86_400
    return today - (days - 1) * 86_400


def _sums(r: Any) -> dict[str, Any]:
    return {
        "requests": r["requests"],
        "errors": r["errors"],
        "inputTokens": r["input_tokens"],
        "cachedTokens": r["cached_tokens"],
        # The share of input tokens the backend's prompt cache served (None: no input).
        "cacheHitShare": round(r["cached_tokens"] / r["input_tokens"], 4)
        if r["input_tokens"]
        else None,
        "outputTokens": r["output_tokens"],
        "reasoningTokens": r["reasoning_tokens"],
        "avgLatencyMs": round(r["avg_latency_ms"], 1) if r["avg_latency_ms"] is not None else None,
        "avgTtftMs": round(r["avg_ttft_ms"], 1) if r["avg_ttft_ms"] is not None else None,
    }


async def admin_usage(store: Store, days: int) -> dict[str, Any]:
    """Return everyone's usage for the last `days` UTC days."""
    start = since(days)
    by_account = await store.fetchall(
        f"SELECT {_day(store)}, r.account_user_id, "
        "COALESCE(u.username, d.username || ' (deleted)') AS username, "
        f"{_SUMS} FROM requests r "
        "LEFT JOIN users u ON u.id = r.account_user_id "
        "LEFT JOIN deleted_users d ON d.id = r.account_user_id WHERE r.ts >= ? "
        "GROUP BY day, r.account_user_id, u.username, d.username "
        "ORDER BY day DESC, r.account_user_id",
        (start,),
    )
    by_key = await store.fetchall(
        f"SELECT {_day(store)}, r.key_id, r.key_kind, k.hint, k.label, u.username, {_SUMS} "
        "FROM requests r LEFT JOIN api_keys k ON k.id = r.key_id "
        "LEFT JOIN users u ON u.id = k.user_id WHERE r.ts >= ? "
        "GROUP BY day, r.key_id, r.key_kind, k.hint, k.label, u.username "
        "ORDER BY day DESC, r.key_id",
        (start,),
    )
    total = await store.fetchone(f"SELECT {_SUMS} FROM requests r WHERE r.ts >= ?", (start,))
    return {
        "days": days,
        "since": start,
        "byAccount": [
            {
                "day": r["day"],
                "userId": r["account_user_id"],
                "username": r["username"],
                **_sums(r),
            }
            for r in by_account
        ],
        "byKey": [
            {
                "day": r["day"],
                "keyId": r["key_id"],
                "keyKind": r["key_kind"],
                "keyHint": r["hint"],
                "keyLabel": r["label"],
                "username": r["username"],
                **_sums(r),
            }
            for r in by_key
        ],
        "totals": _sums(total),
    }


async def user_usage(store: Store, user_id: int, days: int) -> dict[str, Any]:
    """Return one portal user's usage: by their keys, and served by their account."""
    start = since(days)
    own = await store.fetchall(
        f"SELECT {_day(store)}, {_SUMS} FROM requests r JOIN api_keys k ON k.id = r.key_id "
        "WHERE k.user_id = ? AND r.ts >= ? GROUP BY day ORDER BY day DESC",
        (user_id, start),
    )
    served = await store.fetchall(
        f"SELECT {_day(store)}, {_SUMS}, "
        "COALESCE(SUM(CASE WHEN r.key_kind = 'master' THEN 1 ELSE 0 END), 0) AS pool_requests "
        "FROM requests r WHERE r.account_user_id = ? AND r.ts >= ? "
        "GROUP BY day ORDER BY day DESC",
        (user_id, start),
    )
    return {
        "days": days,
        "since": start,
        "byKey": [{"day": r["day"], **_sums(r)} for r in own],
        "servedByAccount": [
            {"day": r["day"], **_sums(r), "poolRequests": r["pool_requests"]} for r in served
        ],
    }
