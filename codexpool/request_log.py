"""The request log: the stored usage rows one by one, newest first, filtered and cursor-paged.

The admin sees every request; a portal user sees the requests made with their own keys and the
requests their account served (their own and the pool's), never anyone else's. A row says who
asked, which account answered, how it went and how long it took; the prompt and the answer are
never stored, so they cannot leak here.

Paging is by an opaque cursor holding the (ts, id) of the last row shown, so a page stays
correct while new rows arrive and costs one index range scan however deep the reader goes.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from multidict import MultiMapping

from .errors import ApiError
from .store import Store
from .validate import whole_number

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
STATUS_CLASSES = {"2xx": 2, "4xx": 4, "5xx": 5}
ADMIN_PARAMS = frozenset({"user", "account", "status", "since", "until", "limit", "cursor"})
PORTAL_PARAMS = frozenset({"status", "since", "until", "limit", "cursor"})

_COLUMNS = (
    "r.id, r.ts, r.endpoint, r.key_id, r.key_kind, r.key_user_id, r.account_user_id, r.model,"
    " r.effort, r.stream, r.status, r.error_code, r.error_source, r.error_message, r.request_id,"
    " r.latency_ms, r.ttft_ms, r.input_tokens, r.cached_tokens, r.output_tokens,"
    " r.reasoning_tokens"
)


@dataclass(frozen=True)
class Filters:
    """What a reader asked for; None means "any"."""

    key_user_id: int | None = None
    account_user_id: int | None = None
    status_class: int | None = None
    since: float | None = None
    until: float | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[float, int] | None = None  # (ts, id) of the last row of the previous page


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, "invalid_request", param=param)


def parse_time(raw: str, param: str) -> float:
    """Read Unix seconds or an ISO 8601 time (UTC unless it names an offset)."""
    try:
        value = float(raw)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise _bad(
                param, f"{param} must be Unix seconds or an ISO 8601 time, got {raw[:40]!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if not math.isfinite(value) or value < 0:
        raise _bad(param, f"{param} must be a non-negative number of Unix seconds")
    return value


def encode_cursor(ts: float, row_id: int) -> str:
    """Return the opaque cursor that continues after this row."""
    return base64.urlsafe_b64encode(f"{ts!r}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[float, int]:
    """Read a cursor made by encode_cursor, or raise a 400 naming `cursor`."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        ts_text, id_text = text.split(":")
        ts, row_id = float(ts_text), int(id_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _bad("cursor", "cursor is not one this server handed out") from None
    if not math.isfinite(ts) or not 0 <= row_id < 2**63:  # SQLite integers are 64-bit
        raise _bad("cursor", "cursor is not one this server handed out")
    return ts, row_id


async def _user_id(store: Store, username: str, param: str) -> int:
    row = await store.fetchone("SELECT id FROM users WHERE username = ?", (username.casefold(),))
    if row is None:
        raise ApiError(404, f"No user named {username[:64]!r}.", "user_not_found", param=param)
    return int(row["id"])


async def parse_filters(store: Store, query: MultiMapping[str], admin: bool) -> Filters:
    """Validate the query string into Filters, or raise an OpenAI-style 400/404 naming the
    parameter. Unknown parameters are refused so a typo never silently shows everything."""
    allowed = ADMIN_PARAMS if admin else PORTAL_PARAMS
    for name in query:
        if name not in allowed:
            raise _bad(name, f"Unknown parameter {name[:40]!r}; use {', '.join(sorted(allowed))}.")
    values: dict[str, Any] = {}
    if "user" in query:
        values["key_user_id"] = await _user_id(store, query["user"], "user")
    if "account" in query:
        values["account_user_id"] = await _user_id(store, query["account"], "account")
    if "status" in query:
        cls = STATUS_CLASSES.get(query["status"].lower())
        if cls is None:
            raise _bad("status", "status must be 2xx, 4xx or 5xx")
        values["status_class"] = cls
    for name in ("since", "until"):
        if name in query:
            values[name] = parse_time(query[name], name)
    if "limit" in query:
        values["limit"] = whole_number(query["limit"], "limit", 1, MAX_LIMIT)
    if "cursor" in query:
        values["after"] = decode_cursor(query["cursor"])
    return Filters(**values)


def _where(f: Filters, scope: str | None = None) -> tuple[str, list[Any]]:
    """Return the WHERE clause and parameters; `scope` is one more column = ? condition."""
    parts: list[str] = []
    params: list[Any] = []
    if f.key_user_id is not None:
        parts.append("r.key_user_id = ?")
        params.append(f.key_user_id)
    if f.account_user_id is not None:
        parts.append("r.account_user_id = ?")
        params.append(f.account_user_id)
    if f.status_class is not None:
        parts.append("r.status / 100 = ?")  # the expression of the requests_status_class index
        params.append(f.status_class)
    if f.since is not None:
        parts.append("r.ts >= ?")
        params.append(f.since)
    if f.until is not None:
        parts.append("r.ts < ?")
        params.append(f.until)
    if f.after is not None:
        # Written so the ts index bounds the scan; the id breaks ties within one timestamp.
        parts.append("r.ts <= ? AND (r.ts < ? OR r.id < ?)")
        params.extend([f.after[0], f.after[0], f.after[1]])
    if scope is not None:
        parts.append(scope)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


async def _rows(store: Store, f: Filters, scope: str | None, scope_params: list[Any]) -> list[Any]:
    where, params = _where(f, scope)
    return await store.fetchall(
        f"SELECT {_COLUMNS} FROM requests r{where} ORDER BY r.ts DESC, r.id DESC LIMIT ?",
        [*params, *scope_params, f.limit + 1],
    )


async def _names(store: Store, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = await store.fetchall(f"SELECT id, username FROM users WHERE id IN ({marks})", list(ids))
    names = {int(r["id"]): r["username"] for r in rows}
    gone = [i for i in ids if i not in names]
    if gone:  # a deleted user's rows stay; their tombstone still names them
        rows = await store.fetchall(
            f"SELECT id, username FROM deleted_users WHERE id IN ({','.join('?' * len(gone))})",
            gone,
        )
        names.update({int(r["id"]): f"{r['username']} (deleted)" for r in rows})
    return names


async def _page(store: Store, f: Filters, rows: list[Any]) -> dict[str, Any]:
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    names = await _names(
        store,
        {r[c] for r in rows for c in ("key_user_id", "account_user_id") if r[c] is not None},
    )
    data = [_row_json(r, names) for r in rows]
    last = rows[-1] if rows else None
    return {
        "object": "list",
        "data": data,
        "hasMore": more,
        "nextCursor": encode_cursor(last["ts"], last["id"]) if more and last else None,
    }


def _row_json(r: Any, names: dict[int, str]) -> dict[str, Any]:
    latency = r["latency_ms"]
    return {
        "id": r["id"],
        "requestId": r["request_id"],
        "ts": r["ts"],
        "startedAt": r["ts"] - latency / 1000 if latency is not None else None,
        "endpoint": r["endpoint"],
        "keyKind": r["key_kind"],
        "user": names.get(r["key_user_id"]) if r["key_user_id"] is not None else None,
        "userId": r["key_user_id"],
        "account": names.get(r["account_user_id"]) if r["account_user_id"] is not None else None,
        "accountId": r["account_user_id"],
        "model": r["model"],
        "effort": r["effort"],
        "stream": bool(r["stream"]),
        "status": r["status"],
        "errorCode": r["error_code"],
        "errorSource": r["error_source"],
        "errorMessage": r["error_message"],
        "ttftMs": round(r["ttft_ms"], 1) if r["ttft_ms"] is not None else None,
        "durationMs": round(latency, 1) if latency is not None else None,
        "inputTokens": r["input_tokens"],
        "cachedTokens": r["cached_tokens"],
        "outputTokens": r["output_tokens"],
        "reasoningTokens": r["reasoning_tokens"],
    }


async def admin_page(store: Store, f: Filters) -> dict[str, Any]:
    """Return one page of everyone's requests."""
    return await _page(store, f, await _rows(store, f, None, []))


async def user_page(store: Store, user_id: int, f: Filters) -> dict[str, Any]:
    """Return one page of the requests made with `user_id`'s keys or served by their account.

    Two index-ordered scans merged here, instead of one `OR` that SQLite would have to sort.
    """
    own = await _rows(store, f, "r.key_user_id = ?", [user_id])
    served = await _rows(store, f, "r.account_user_id = ?", [user_id])
    merged: list[Any] = []
    seen: set[int] = set()
    for row in heapq.merge(own, served, key=lambda r: (r["ts"], r["id"]), reverse=True):
        if row["id"] not in seen:
            seen.add(row["id"])
            merged.append(row)
    return await _page(store, f, merged[: f.limit + 1])
