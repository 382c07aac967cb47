"""Audit trail: one row per security-relevant event (sign-ins, keys, deletions, links).

Rows name who did what to whom and from where; they never carry a password, key or token, so
the table can be shown to the admin as it is.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .logsafe import escape_controls
from .store import Store

_LOGGER = logging.getLogger(__name__)
MAX_DETAIL_LEN = 500
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


async def record(
    store: Store,
    actor: str,
    action: str,
    target: str | None = None,
    detail: str | None = None,
    ip: str | None = None,
) -> None:
    """Append one audit row; a failed write is logged, never raised (auditing must not break
    the action it describes)."""
    # Names and details come from clients: the trail shows their control characters escaped.
    actor = escape_controls(actor)
    target = escape_controls(target) if target is not None else None
    if detail is not None:
        detail = escape_controls(detail[:MAX_DETAIL_LEN])
    try:
        await store.execute(
            "INSERT INTO audit (ts, actor, action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), actor, action, target, detail, ip),
            bookkeeping=True,  # no cache depends on the audit trail
        )
    except Exception:
        _LOGGER.exception("Could not write audit row for %s %s", actor, action)
    _LOGGER.info("audit: %s %s %s (%s)", actor, action, target or "-", ip or "-")


async def recent(store: Store, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """Return the newest audit rows first, as camelCase-ready dicts."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    rows = await store.fetchall(
        "SELECT id, ts, actor, action, target, detail, ip FROM audit ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [
        {
            "id": r["id"],
            "ts": r["ts"],
            "actor": r["actor"],
            "action": r["action"],
            "target": r["target"],
            "detail": r["detail"],
            "ip": r["ip"],
        }
        for r in rows
    ]
