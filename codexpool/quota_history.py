"""Each account's 5-hour and weekly used-percent over time, and what it predicts.

The LimitCache hands every fresh reading (a read or an app-server push) to `QuotaHistory.take`;
readings are thinned in memory to one point per account per THIN_S (a new window, i.e. a
changed reset time, always gets a point so the drop shows) and written by the limits persister
in one transaction. Points older than `usageRetentionDays` are pruned with the usage rows.

`report()` answers `GET /api/admin/quota-history`: the points, the reset times as marks, and a
projection per account and for the pool at the last hour's rate. Pool totals are counted in
accounts' worth ("1.6 of 3 accounts left"), since percentages of different accounts do not add.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .account_limits import Limits
from .store import Store

_LOGGER = logging.getLogger(__name__)

THIN_S = 300.0  # at most one point per account per 5 minutes (a new window excepted)
RATE_WINDOW_S = 3600.0  # the projection's rate is the last hour's
MIN_RATE_SPAN_S = 240.0  # fewer minutes of points than this give no rate
MAX_POINTS = 400  # per account per answer; older points are thinned further to fit
DEFAULT_HOURS = 24
WINDOWS = (("hourly", "primary"), ("weekly", "secondary"))

# The casts type the bare parameters of the SELECT for PostgreSQL (SQLite needs none).
_REAL = "CAST(? AS DOUBLE PRECISION)"
_INSERT = (
    "INSERT INTO quota_history (user_id, ts, primary_used, primary_resets_at, secondary_used,"
    f" secondary_resets_at) SELECT CAST(? AS BIGINT), {_REAL}, {_REAL}, CAST(? AS BIGINT),"
    f" {_REAL}, CAST(? AS BIGINT) WHERE EXISTS (SELECT 1 FROM users WHERE id = ?)"
)


@dataclass(frozen=True)
class Point:
    """One stored reading."""

    ts: float
    primary_used: float | None
    primary_resets_at: int | None
    secondary_used: float | None
    secondary_resets_at: int | None


class QuotaHistory:
    """Thins readings per account and writes them in batches (the limits persister calls)."""

    def __init__(self, store: Store, thin_s: float = THIN_S) -> None:
        self._store = store
        self.thin_s = thin_s
        self._last: dict[int, Point] = {}  # the last point kept per account
        self._pending: list[tuple[int, Point]] = []

    def take(self, user_id: int, limits: Limits) -> None:
        """Keep this reading if it is the first in THIN_S or opens a new window."""
        if not limits.ok or (limits.primary_used is None and limits.secondary_used is None):
            return
        point = Point(
            limits.fetched_at,
            limits.primary_used,
            limits.primary_resets_at,
            limits.secondary_used,
            limits.secondary_resets_at,
        )
        last = self._last.get(user_id)
        if last is not None:
            new_window = (
                point.primary_resets_at != last.primary_resets_at
                or point.secondary_resets_at != last.secondary_resets_at
            )
            if point.ts - last.ts < self.thin_s and not new_window:
                return
        self._last[user_id] = point
        self._pending.append((user_id, point))

    @property
    def pending(self) -> int:
        """How many points wait to be written."""
        return len(self._pending)

    async def write(self) -> None:
        """Write the kept points (a deleted account's are dropped); retried on failure."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self._store.executemany(
                _INSERT,
                [
                    (
                        uid,
                        p.ts,
                        p.primary_used,
                        p.primary_resets_at,
                        p.secondary_used,
                        p.secondary_resets_at,
                        uid,
                    )
                    for uid, p in batch
                ],
                bookkeeping=True,
            )
        except BaseException as exc:
            self._pending = batch + self._pending
            if not isinstance(exc, Exception):
                raise
            _LOGGER.warning("Could not write %s quota history points yet: %s", len(batch), exc)


async def prune(store: Store, retention_days: int) -> int:
    """Delete points older than the retention; return how many went."""
    cutoff = time.time() - retention_days * 86_400
    return await store.execute(
        "DELETE FROM quota_history WHERE ts < ?", (cutoff,), bookkeeping=True
    )


async def load_points(store: Store, since: float, user_id: int | None) -> dict[int, list[Point]]:
    """Return each account's points since `since`, oldest first, plus the last one before it
    (so a chart starts at the value that held at its left edge)."""
    where, params = ("", []) if user_id is None else (" AND user_id = ?", [user_id])
    rows = await store.fetchall(
        "SELECT user_id, ts, primary_used, primary_resets_at, secondary_used, secondary_resets_at"
        f" FROM quota_history WHERE ts >= ?{where} ORDER BY user_id, ts",
        [since, *params],
    )
    before = await store.fetchall(
        "SELECT q.user_id, q.ts, q.primary_used, q.primary_resets_at, q.secondary_used,"
        " q.secondary_resets_at FROM quota_history q JOIN (SELECT user_id, MAX(ts) AS ts"
        f" FROM quota_history WHERE ts < ?{where} GROUP BY user_id) m"
        " ON m.user_id = q.user_id AND m.ts = q.ts",
        [since, *params],
    )
    out: dict[int, list[Point]] = {}
    for r in [*before, *rows]:
        out.setdefault(r["user_id"], []).append(
            Point(
                r["ts"],
                r["primary_used"],
                r["primary_resets_at"],
                r["secondary_used"],
                r["secondary_resets_at"],
            )
        )
    return out


def used_at(points: list[Point], window: str, at: float) -> float | None:
    """Return the used-percent of a window at time `at`: the last reading before it, or 0 once
    that reading's reset time has passed (a new window starts empty)."""
    last = None
    for p in points:
        if p.ts > at:
            break
        last = p
    if last is None:
        return None
    used, resets = _of(last, window)
    if used is None:
        return None
    if resets is not None and resets <= at:
        return 0.0
    return float(used)


def _of(p: Point, window: str) -> tuple[float | None, int | None]:
    if window == "hourly":
        return p.primary_used, p.primary_resets_at
    return p.secondary_used, p.secondary_resets_at


def rate_per_hour(points: list[Point], window: str, now: float) -> float | None:
    """Return percent used per hour over the last hour, within the current window only."""
    if not points:
        return None
    current = _of(points[-1], window)[1]
    recent = [
        p
        for p in points
        if p.ts >= now - RATE_WINDOW_S
        and _of(p, window)[1] == current
        and _of(p, window)[0] is not None
    ]
    if len(recent) < 2 or recent[-1].ts - recent[0].ts < MIN_RATE_SPAN_S:
        return None
    first, last = _of(recent[0], window)[0], _of(recent[-1], window)[0]
    assert first is not None and last is not None
    return max(0.0, (last - first) / ((recent[-1].ts - recent[0].ts) / 3600))


def projection(
    used: float | None, resets_at: int | None, rate: float | None, now: float
) -> dict[str, Any]:
    """Say when a window runs out at `rate` (percent per hour), unless it resets first."""
    if used is None or rate is None:
        return {"ratePerHour": None, "exhaustsAt": None, "resetsFirst": None}
    if rate <= 0:
        return {"ratePerHour": 0.0, "exhaustsAt": None, "resetsFirst": None}
    at = now + max(0.0, 100.0 - used) / rate * 3600
    resets_first = resets_at is not None and resets_at <= at
    return {
        "ratePerHour": round(rate, 2),
        "exhaustsAt": None if resets_first else round(at, 1),
        "resetsFirst": resets_first,
    }


def _thin(points: list[Point], keep: int) -> list[Point]:
    """Keep at most `keep` points, evenly, always the first and the last."""
    if len(points) <= keep:
        return points
    step = (len(points) - 1) / (keep - 1)
    return [points[round(i * step)] for i in range(keep)]


def account_report(
    user_id: int,
    name: str | None,
    points: list[Point],
    current: Limits | None,
    since: float,
    now: float,
) -> dict[str, Any]:
    """Return one account's points, reset marks, current values and projection."""
    shown = _thin(points, MAX_POINTS)
    resets: set[tuple[str, int]] = set()
    for p in points:
        for window, _ in WINDOWS:
            at = _of(p, window)[1]
            if at is not None and since <= at:
                resets.add((window, at))
    out: dict[str, Any] = {
        "accountId": user_id,
        "account": name,
        "points": _with_resets(shown, now),
        "resets": [{"window": w, "at": at} for w, at in sorted(resets, key=lambda r: r[1])],
    }
    for window, _ in WINDOWS:
        if current is not None and current.ok:
            used = current.primary_used if window == "hourly" else current.secondary_used
            resets_at = (
                current.primary_resets_at if window == "hourly" else current.secondary_resets_at
            )
            if used is not None and resets_at is not None and resets_at <= now:
                used = 0.0
        else:
            used = used_at(points, window, now)
            resets_at = _of(points[-1], window)[1] if points else None
        out[window] = {
            "used": used,
            "resetsAt": resets_at,
            **projection(used, resets_at, rate_per_hour(points, window, now), now),
        }
    return out


def _with_resets(points: list[Point], now: float) -> list[dict[str, Any]]:
    """Return the points as JSON, plus a point at each reset that passed before the next
    reading, so a chart drops to 0 where the window really started over."""
    out: list[dict[str, Any]] = []
    for i, p in enumerate(points):
        out.append(
            {
                "ts": p.ts,
                "hourlyUsed": _used_or_zero(p, "hourly"),
                "weeklyUsed": _used_or_zero(p, "weekly"),
            }
        )
        until = points[i + 1].ts if i + 1 < len(points) else now
        resets = sorted(
            {at for w, _ in WINDOWS if (at := _of(p, w)[1]) is not None and p.ts < at < until}
        )
        for at in resets:
            zero = Point(
                float(at),
                p.primary_used,
                p.primary_resets_at,
                p.secondary_used,
                p.secondary_resets_at,
            )
            out.append(
                {
                    "ts": float(at),
                    "hourlyUsed": _used_or_zero(zero, "hourly"),
                    "weeklyUsed": _used_or_zero(zero, "weekly"),
                }
            )
    return out


def _used_or_zero(p: Point, window: str) -> float | None:
    used, resets = _of(p, window)
    if used is not None and resets is not None and resets <= p.ts:
        return 0.0
    return used


def pool_report(
    accounts: list[dict[str, Any]],
    points: dict[int, list[Point]],
    since: float,
    now: float,
    steps: int = 96,
) -> dict[str, Any]:
    """Return the pool in accounts' worth: left now, a series over the range, and when it
    runs out at the last hour's summed rate."""
    out: dict[str, Any] = {"accounts": len(accounts)}
    series_ts = [since + (now - since) * i / steps for i in range(steps + 1)]
    for window, _ in WINDOWS:
        known = [a for a in accounts if a[window]["used"] is not None]
        left = sum(max(0.0, 100.0 - a[window]["used"]) for a in known) / 100
        rate = sum(a[window]["ratePerHour"] or 0.0 for a in known) / 100  # accounts per hour
        exhausts = None
        if known and rate > 0:
            exhausts = round(now + left / rate * 3600, 1)
            # An account whose window resets before then gives its quota back: no prediction.
            if any(
                a[window]["resetsAt"] is not None and a[window]["resetsAt"] <= exhausts
                for a in known
            ):
                exhausts = None
        series = []
        for t in series_ts:
            readings = [used_at(points.get(a["accountId"], []), window, t) for a in known]
            values = [v for v in readings if v is not None]
            series.append(
                {
                    "ts": round(t, 1),
                    "left": round(sum(100 - v for v in values) / 100, 3) if values else None,
                }
            )
        out[window] = {
            "known": len(known),
            "accountsLeft": round(left, 2),
            "accountsPerHour": round(rate, 3),
            "exhaustsAt": exhausts,
            "series": series,
        }
    return out


async def report(
    store: Store,
    current: dict[int, Limits],
    hours: int,
    user_id: int | None,
    now: float | None = None,
) -> dict[str, Any]:
    """Return the quota history of one account (or every account) over the last `hours`."""
    now = time.time() if now is None else now
    since = now - hours * 3600
    points = await load_points(store, since, user_id)
    ids = set(points) | (set(current) if user_id is None else ({user_id} & set(current)))
    if user_id is not None:
        ids.add(user_id)
    names = (
        {
            r["id"]: r["username"]
            for r in await store.fetchall(
                f"SELECT id, username FROM users WHERE id IN ({','.join('?' * len(ids))})",
                list(ids),
            )
        }
        if ids
        else {}
    )
    accounts = [
        account_report(uid, names.get(uid), points.get(uid, []), current.get(uid), since, now)
        for uid in sorted(ids)
        if uid in names
    ]
    return {
        "hours": hours,
        "since": round(since, 1),
        "now": round(now, 1),
        "accounts": accounts,
        "pool": pool_report(accounts, points, since, now),
    }
