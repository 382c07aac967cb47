"""Usage over time for the charts: requests, errors and tokens per UTC hour or day, split by the
account that served the requests or by the key that made them.

The admin sees every account and key; a portal user sees their own: split "by key" it is the
requests made with their keys, "by account" the requests their account served (their own and
the pool's). Buckets with no requests are present with zeros so charts need no gap logic.
"""

from __future__ import annotations

import time
from typing import Any

from multidict import MultiMapping

from .errors import ApiError
from .store import Store
from .validate import whole_number

BUCKETS = {"hour": 3600, "day": 86_400}
MAX_SPAN = {"hour": 7 * 24, "day": 366}  # buckets per answer
DEFAULT_SPAN = {"hour": 24, "day": 14}
SPLITS = ("account", "key")

_SUMS = (
    "COUNT(*) AS requests, COALESCE(SUM(CASE WHEN r.status >= 400 THEN 1 ELSE 0 END), 0) AS errors,"
    " COALESCE(SUM(r.input_tokens), 0) AS input_tokens,"
    " COALESCE(SUM(r.cached_tokens), 0) AS cached_tokens,"
    " COALESCE(SUM(r.output_tokens), 0) AS output_tokens"
)
METRICS = ("requests", "errors", "inputTokens", "cachedTokens", "outputTokens")


def parse(query: MultiMapping[str]) -> tuple[str, str, int]:
    """Return (bucket, split, count) from `bucket`, `by` and `count`, or raise a 400."""
    bucket = query.get("bucket", "day")
    if bucket not in BUCKETS:
        raise ApiError(400, "bucket must be hour or day", "invalid_request", param="bucket")
    split = query.get("by", "account")
    if split not in SPLITS:
        raise ApiError(400, "by must be account or key", "invalid_request", param="by")
    count = whole_number(
        query.get("count", str(DEFAULT_SPAN[bucket])), "count", 1, MAX_SPAN[bucket]
    )
    return bucket, split, count


def _series(
    rows: list[Any], starts: list[float], size: int, label: Any
) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """Group rows (bucket, group, sums...) into one zero-filled series per group + totals."""
    index = {int(s // size): i for i, s in enumerate(starts)}
    groups: dict[Any, dict[str, Any]] = {}
    totals = {m: [0] * len(starts) for m in METRICS}
    for r in rows:
        i = index.get(int(r["b"]))
        if i is None:
            continue
        key = r["g"]
        group = groups.get(key)
        if group is None:
            group = {**label(r), **{m: [0] * len(starts) for m in METRICS}}
            groups[key] = group
        for metric, column in zip(
            METRICS,
            ("requests", "errors", "input_tokens", "cached_tokens", "output_tokens"),
            strict=True,
        ):
            group[metric][i] += r[column]
            totals[metric][i] += r[column]
    ordered = sorted(groups.values(), key=lambda g: -sum(g["requests"]))
    return ordered, totals


def _frame(bucket: str, count: int, now: float | None) -> tuple[int, list[float]]:
    size = BUCKETS[bucket]
    now = time.time() if now is None else now
    last = now - now % size
    return size, [last - (count - 1 - i) * size for i in range(count)]


def _cache_share(totals: dict[str, list[int]]) -> float | None:
    inputs = sum(totals["inputTokens"])
    return round(sum(totals["cachedTokens"]) / inputs, 4) if inputs else None


async def admin_series(
    store: Store, bucket: str, split: str, count: int, now: float | None = None
) -> dict[str, Any]:
    """Return everyone's usage per bucket, one series per account or per key."""
    size, starts = _frame(bucket, count, now)
    if split == "account":
        rows = await store.fetchall(
            # Names join the grouped rows, not every request (~30 % faster at 150k rows).
            "SELECT s.*, COALESCE(u.username, d.username || ' (deleted)') AS username FROM"
            f" (SELECT {store.sql.bucket('r.ts', size)} AS b, r.account_user_id AS g, {_SUMS}"
            " FROM requests r WHERE r.ts >= ? GROUP BY b, g) s"
            " LEFT JOIN users u ON u.id = s.g LEFT JOIN deleted_users d ON d.id = s.g",
            (starts[0],),
        )
        label = lambda r: {  # noqa: E731
            "id": r["g"],
            "name": r["username"] or ("no account" if r["g"] is None else f"#{r['g']}"),
        }
    else:
        rows = await store.fetchall(
            "SELECT s.*, k.hint, u.username FROM"
            f" (SELECT {store.sql.bucket('r.ts', size)} AS b, COALESCE(r.key_id, -1) AS g,"
            f" MAX(r.key_kind) AS key_kind, {_SUMS} FROM requests r WHERE r.ts >= ?"
            " GROUP BY b, g) s"
            " LEFT JOIN api_keys k ON k.id = s.g LEFT JOIN users u ON u.id = k.user_id",
            (starts[0],),
        )
        label = lambda r: {  # noqa: E731
            "id": None if r["g"] == -1 else r["g"],
            "name": _key_name(r),
        }
    groups, totals = _series(rows, starts, size, label)
    return _answer(bucket, split, starts, groups, totals)


def _key_name(r: Any) -> str:
    if r["key_kind"] == "master":
        return f"master key {r['hint'] or ''}".strip()
    if r["key_kind"] == "session" or r["g"] == -1:
        return "portal sessions"
    return f"{r['username'] or 'deleted user'} {r['hint'] or ''}".strip()


async def user_series(
    store: Store, user_id: int, bucket: str, split: str, count: int, now: float | None = None
) -> dict[str, Any]:
    """Return one user's usage: by key (requests made with their keys, one series per key)
    or by account (requests their account served: their own and the pool's)."""
    size, starts = _frame(bucket, count, now)
    if split == "key":
        rows = await store.fetchall(
            f"SELECT {store.sql.bucket('r.ts', size)} AS b, r.key_id AS g, k.hint, {_SUMS}"
            " FROM requests r LEFT JOIN api_keys k ON k.id = r.key_id"
            " WHERE r.key_user_id = ? AND r.ts >= ? GROUP BY b, g, k.hint",
            (user_id, starts[0]),
        )
        label = lambda r: {"id": r["g"], "name": f"my key {r['hint'] or ''}".strip()}  # noqa: E731
    else:
        rows = await store.fetchall(
            f"SELECT {store.sql.bucket('r.ts', size)} AS b,"
            f" CASE WHEN r.key_kind = 'master' THEN 'pool' ELSE 'own' END AS g, {_SUMS}"
            " FROM requests r WHERE r.account_user_id = ? AND r.ts >= ? GROUP BY b, g",
            (user_id, starts[0]),
        )
        label = lambda r: {  # noqa: E731
            "id": None,
            "name": "pool (master key)" if r["g"] == "pool" else "mine",
        }
    groups, totals = _series(rows, starts, size, label)
    return _answer(bucket, split, starts, groups, totals)


def _answer(
    bucket: str,
    split: str,
    starts: list[float],
    groups: list[dict[str, Any]],
    totals: dict[str, list[int]],
) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "by": split,
        "starts": starts,
        "groups": groups,
        "totals": totals,
        "cacheHitShare": _cache_share(totals),
    }
