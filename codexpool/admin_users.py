"""What the admin panel shows and does with portal users: the table, totals, deletion.

Plain async functions over the store, so they are testable without HTTP. Limit columns come
from the pool's limit cache (or `limit_snapshots`); until a read exists they are null.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import linking, users
from .account_limits import Limits, snapshot_from_row
from .codex.state_dir import remove_spares
from .config import Settings
from .device_login import DeviceLogins
from .errors import ApiError
from .key_limits import KeyLimits, KeyQuotas, Owner
from .pool import Pool
from .selection import PoolView
from .store import Store

_LOGGER = logging.getLogger(__name__)

_TABLE_SQL = """
SELECT u.id, u.username, u.created_at, u.pool_opt_in, u.disabled,
       k.label AS key_label, k.hint AS key_hint, k.created_at AS key_created_at,
       k.last_used_at AS key_last_used_at, k.max_requests_per_day, k.max_tokens_per_day,
       k.max_concurrent, k.allowed_models,
       l.primary_used, l.primary_resets_at, l.primary_window_mins,
       l.secondary_used, l.secondary_resets_at, l.secondary_window_mins,
       l.plan_type, l.fetched_at, l.ok, l.error,
       (SELECT COUNT(*) FROM requests r
         WHERE r.account_user_id = u.id AND r.status < 400) AS served,
       (SELECT MAX(r.ts) FROM requests r WHERE r.account_user_id = u.id) AS last_request_at
FROM users u
LEFT JOIN api_keys k ON k.user_id = u.id AND k.kind = 'user' AND k.revoked_at IS NULL
LEFT JOIN limit_snapshots l ON l.user_id = u.id
ORDER BY u.id
"""


def remaining(used_percent: float | None) -> float | None:
    """Return the remaining percentage of a window, or None when it is unknown."""
    if used_percent is None:
        return None
    return round(max(0.0, min(100.0, 100.0 - float(used_percent))), 1)


def _latest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def limit_fields(lim: Limits | None, now: float) -> dict[str, Any]:
    """Return the limit columns of one account (all null when never read)."""
    return {
        "hourlyRemaining": lim.hourly_remaining(now) if lim else None,
        "hourlyResetsAt": lim.primary_resets_at if lim else None,
        "hourlyWindowMins": lim.primary_window_mins if lim else None,
        "weeklyRemaining": lim.weekly_remaining(now) if lim else None,
        "weeklyResetsAt": lim.secondary_resets_at if lim else None,
        "weeklyWindowMins": lim.secondary_window_mins if lim else None,
        "limitsFetchedAt": lim.fetched_at if lim else None,
        "limitsAgeSeconds": round(lim.age(now), 1) if lim else None,
        "limitsStale": (not lim.ok) if lim else None,
        "limitsError": lim.error if lim else None,
    }


async def user_table(
    store: Store,
    settings: Settings,
    pool: Pool | None = None,
    quotas: KeyQuotas | None = None,
    instruction_fallbacks: Mapping[str, float] | None = None,
    linked_check: Callable[[int], bool] | None = None,
) -> dict[str, Any]:
    """Return the admin table: one row per portal user, totals, pool state and master key.

    Limits come from the pool's in-memory cache (fed by reads and by the pushes after every
    turn), falling back to the persisted snapshot for accounts not read since start-up.
    `instruction_fallbacks` maps account keys to when the backend refused the client's
    instructions there (the engine's memory), shown so the admin knows which accounts pay for
    Codex's full instructions. `linked_check` tells whether an account has a login (a cluster
    asks the database's copy); by default its local auth.json is read.
    """
    fallbacks = instruction_fallbacks or {}
    now = time.time()
    view = None
    if pool is not None:
        await pool.candidates()
        view = pool.view(now)
    table: list[dict[str, Any]] = []
    totals = {"hourlyRemaining": 0.0, "weeklyRemaining": 0.0, "linked": 0, "keyed": 0}
    rows = await store.fetchall(_TABLE_SQL)
    owners: list[Owner] = [("user", r["id"]) for r in rows] + [("master", None)]
    use = await quotas.usage(owners) if quotas is not None else {}
    for r in rows:
        uid = r["id"]
        linked = (
            linked_check(uid)
            if linked_check is not None
            else linking.is_linked(linking.codex_home(settings, uid))
        )
        has_key = r["key_hint"] is not None
        key = (
            {
                "label": r["key_label"],
                "hint": r["key_hint"],
                "created_at": r["key_created_at"],
                "last_used_at": r["key_last_used_at"],
                "limits": KeyLimits.from_row(r),
            }
            if has_key
            else None
        )
        lim = (pool.limits_of(uid) if pool is not None else None) or snapshot_from_row(r)
        fields = limit_fields(lim, now)
        cooldown = pool.cooldown_of(uid, now) if pool is not None else None
        reason = pool_reason(view, uid, has_key)
        table.append(
            {
                "id": uid,
                "username": r["username"],
                "createdAt": r["created_at"],
                "linked": linked,
                **users.key_fields(users.key_summary(key, use.get(("user", uid)))),
                **fields,
                "lastUsedAt": _latest(r["key_last_used_at"], r["last_request_at"]),
                "requestsServed": r["served"],
                "poolOptIn": bool(r["pool_opt_in"]),
                "disabled": bool(r["disabled"]),
                "eligible": reason is None if view is not None else None,
                "ineligibleReason": reason,
                "coolingDownUntil": cooldown.until if cooldown else None,
                "coolingDownReason": cooldown.reason if cooldown else None,
                "instructionsFallbackAt": fallbacks.get(str(uid)),
            }
        )
        totals["linked"] += linked
        totals["keyed"] += has_key
        if linked and has_key:  # spec: only linked, keyed users with a displayed value count
            totals["hourlyRemaining"] += fields["hourlyRemaining"] or 0.0
            totals["weeklyRemaining"] += fields["weeklyRemaining"] or 0.0
    master = await users.live_key_row(store, user_id=None, kind="master")
    return {
        "users": table,
        "totals": {
            **totals,
            "hourlyRemaining": round(totals["hourlyRemaining"], 1),
            "weeklyRemaining": round(totals["weeklyRemaining"], 1),
            "users": len(table),
            "eligible": len(view.eligible) if view is not None else None,
            "nextResetAt": view.next_reset if view is not None else None,
        },
        "masterKey": users.key_summary(master, use.get(("master", None))),
    }


def pool_reason(view: PoolView | None, user_id: int, has_key: bool) -> str | None:
    """Return why the master key cannot use this account (None: it can, or no pool view)."""
    if view is None:
        return None
    if not has_key:
        return "no_key"
    if user_id in view.eligible:
        return None
    return view.reasons.get(user_id, "not_linked")


async def find_user(store: Store, raw_username: object) -> users.User:
    """Return the named user or raise 400 (bad name) / 404 (no such user)."""
    if not isinstance(raw_username, str) or not raw_username.strip():
        raise ApiError(400, "username is required", "invalid_username", param="username")
    user = await users.get_user(store, raw_username.strip().casefold())
    if user is None:
        raise ApiError(404, f"No user named {raw_username.strip()!r}.", "user_not_found")
    return user


async def delete_user(
    store: Store, settings: Settings, logins: DeviceLogins, user: users.User
) -> None:
    """Delete a user and everything that acts for them: flow, app-server, keys, limits, home
    (and codex's spare databases).

    Order matters: the login process and the app-server go first so nothing writes into the
    Codex home while it is removed; the row's deletion cascades to keys and cached limits, and
    with the row gone every portal cookie of the user stops matching.
    """
    await logins.forget(user.id)
    await logins.stop_account(user.id)
    await users.bump_session_epoch(store, user.id)
    await users.delete_user(store, user.id)
    linking.remove_home(linking.codex_home(settings, user.id))
    remove_spares(settings.codex_state_path, str(user.id))
    _LOGGER.info("Deleted user %s (id %s)", user.username, user.id)
