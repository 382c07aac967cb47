"""Operator alerts: watch the pool for trouble and POST each new condition to a webhook once.

Conditions (checked every CHECK_EVERY_S from in-memory state, no I/O):
- an account's login became invalid (a turn failed with "unauthorized": the pool's cooldown);
- an account's 5-hour or weekly quota reached `alertQuotaPercent` (once per window);
- the pool is exhausted (members, none eligible, some out of quota), and when it recovers;
- an app-server crash loop (CRASH_LOOP_COUNT restarts of one account's app-server within
  CRASH_LOOP_WINDOW_S);
- the database busy: usage rows could not be written for `alertDatabaseBusySeconds`.

A condition alerts when it starts, not while it lasts; once it has cleared it may alert again.
The body is JSON with a Slack/Discord-compatible `text` (Discord reads `content`, so both are
sent) and the panel's address. A failed delivery is retried with growing delays; every alert
and its delivery state is kept (in memory, the newest MAX_KEPT) for the admin panel.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .account_limits import Limits
from .selection import Cooldown, PoolView

_LOGGER = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0
CRASH_LOOP_COUNT = 3
CRASH_LOOP_WINDOW_S = 600.0
RETRY_DELAYS_S = (2.0, 10.0, 60.0, 300.0, 900.0)  # after attempt 1, 2, ...; then it failed
POST_TIMEOUT_S = 10.0
MAX_KEPT = 100
EXHAUSTED_REASONS = frozenset({"hourly_exhausted", "weekly_exhausted", "cooling_down"})
WINDOW_NAMES = {"hourly": "5-hour", "weekly": "weekly"}


@dataclass(frozen=True)
class Condition:
    """A problem that holds now; `key` names it so it alerts once while it lasts."""

    key: str
    kind: str
    text: str
    account: str | None = None


@dataclass
class Alert:
    """One alert and the state of its delivery."""

    id: int
    kind: str
    text: str
    account: str | None
    at: float
    state: str = "pending"  # pending | retrying | delivered | failed | not_sent
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the panel's view of this alert."""
        return {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "account": self.account,
            "at": self.at,
            "state": self.state,
            "attempts": self.attempts,
            "lastError": self.last_error,
            "nextAttemptAt": self.next_attempt_at,
            "deliveredAt": self.delivered_at,
        }


@dataclass(frozen=True)
class PoolState:
    """What the watcher reads at one moment (built by the app from its live objects)."""

    now: float
    view: PoolView
    names: Mapping[int, str]
    cooldowns: Mapping[int, Cooldown]
    limits: Mapping[int, Limits]
    crashes: Iterable[tuple[float, str]]
    db_failing_since: float | None


def conditions(state: PoolState, quota_percent: int, db_busy_s: float) -> list[Condition]:
    """Return every alerting condition that holds in `state` (pure)."""
    out: list[Condition] = []
    now = state.now

    def name(uid: int) -> str:
        return state.names.get(uid, f"#{uid}")

    for uid, cd in state.cooldowns.items():
        if cd.reason == "unauthorized" and cd.until > now:
            out.append(
                Condition(
                    f"login:{uid}",
                    "login_invalid",
                    f"The ChatGPT login of account {name(uid)} is no longer valid; the owner "
                    "must link it again on the portal.",
                    name(uid),
                )
            )
    for uid, lim in state.limits.items():
        for window, used, resets in (
            ("hourly", lim.primary_used, lim.primary_resets_at),
            ("weekly", lim.secondary_used, lim.secondary_resets_at),
        ):
            if used is None or used < quota_percent or (resets is not None and resets <= now):
                continue
            when = (
                f"; it resets at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(resets))}"
                if resets
                else ""
            )
            out.append(
                Condition(
                    f"quota:{uid}:{window}:{resets}",
                    "quota_threshold",
                    f"Account {name(uid)} has used {used:.0f}% of its {WINDOW_NAMES[window]} "
                    f"quota (alert at {quota_percent}%){when}.",
                    name(uid),
                )
            )
    view = state.view
    if (
        view.members
        and not view.eligible
        and any(r in EXHAUSTED_REASONS for r in view.reasons.values())
    ):
        back = (
            f" The first account comes back at "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(view.next_reset))}."
            if view.next_reset
            else ""
        )
        out.append(
            Condition(
                "pool_exhausted",
                "pool_exhausted",
                f"The pool is exhausted: none of its {view.members} accounts can serve "
                f"master-key requests now.{back}",
            )
        )
    recent: dict[str, int] = {}
    for at, key in state.crashes:
        if now - at <= CRASH_LOOP_WINDOW_S:
            recent[key] = recent.get(key, 0) + 1
    for key, count in recent.items():
        if count >= CRASH_LOOP_COUNT:
            uid = int(key) if key.isdigit() else -1
            out.append(
                Condition(
                    f"crash_loop:{key}",
                    "app_server_crash_loop",
                    f"The codex app-server of account {name(uid)} crashed {count} times in the "
                    f"last {CRASH_LOOP_WINDOW_S / 60:.0f} minutes; see the server log.",
                    name(uid),
                )
            )
    if state.db_failing_since is not None and now - state.db_failing_since >= db_busy_s:
        out.append(
            Condition(
                "database_busy",
                "database_busy",
                f"The database has refused writes for {now - state.db_failing_since:.0f} s "
                "(locked by another process, or failing); usage rows wait in memory.",
            )
        )
    return out


class Alerts:
    """Turns conditions into alerts once each, and delivers them to the webhook."""

    def __init__(self, webhook_url: str, panel_url: str, quota_percent: int, db_busy_s: float):
        self.webhook_url = webhook_url
        self.panel_url = panel_url
        self.quota_percent = quota_percent
        self.db_busy_s = db_busy_s
        self.kept: deque[Alert] = deque(maxlen=MAX_KEPT)
        self._active: set[str] = set()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.checked = 0

    async def start(self) -> None:
        """Open the HTTP client (only when a webhook is configured)."""
        if self.webhook_url:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S)
            )

    async def close(self) -> None:
        """Stop retries in flight and close the client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check(self, state: PoolState) -> list[Alert]:
        """Alert every condition that started since the last check; return the new alerts."""
        self.checked += 1
        now_holding = {c.key: c for c in conditions(state, self.quota_percent, self.db_busy_s)}
        fired = [
            self.fire(c.kind, c.text, c.account)
            for k, c in now_holding.items()
            if k not in self._active
        ]
        if "pool_exhausted" in self._active and "pool_exhausted" not in now_holding:
            eligible = len(state.view.eligible)
            fired.append(
                self.fire(
                    "pool_recovered",
                    f"The pool has recovered: {eligible} account"
                    f"{'' if eligible == 1 else 's'} can serve master-key requests again.",
                    None,
                )
            )
        self._active = set(now_holding)
        return fired

    def fire(self, kind: str, text: str, account: str | None) -> Alert:
        """Keep an alert and start delivering it."""
        alert = Alert(next(self._ids), kind, text, account, time.time())
        self.kept.append(alert)
        _LOGGER.warning("Alert (%s): %s", kind, text)
        if self._session is None:
            alert.state = "not_sent"
            return alert
        task = asyncio.create_task(self._deliver(alert), name=f"alert-{alert.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return alert

    def body(self, alert: Alert) -> dict[str, Any]:
        """Return the webhook body: `text` (Slack), `content` (Discord) and the details."""
        link = self.panel_url
        text = f"codexpool: {alert.text}" + (f" Panel: {link}" if link else "")
        return {
            "text": text,
            "content": text,
            "event": alert.kind,
            "account": alert.account,
            "at": alert.at,
            "panelUrl": link or None,
            "id": alert.id,
        }

    async def _deliver(self, alert: Alert) -> None:
        """POST the alert until a 2xx answer, waiting RETRY_DELAYS_S between tries."""
        assert self._session is not None
        body = self.body(alert)
        for attempt in range(len(RETRY_DELAYS_S) + 1):
            alert.attempts = attempt + 1
            try:
                async with self._session.post(self.webhook_url, json=body) as resp:
                    if 200 <= resp.status < 300:
                        alert.state = "delivered"
                        alert.delivered_at = time.time()
                        alert.next_attempt_at = None
                        alert.last_error = None
                        return
                    alert.last_error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                alert.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if attempt == len(RETRY_DELAYS_S):
                break
            delay = RETRY_DELAYS_S[attempt]
            alert.state = "retrying"
            alert.next_attempt_at = time.time() + delay
            await asyncio.sleep(delay)
        alert.state = "failed"
        alert.next_attempt_at = None
        _LOGGER.error(
            "Alert %s could not be delivered after %s tries: %s",
            alert.id,
            alert.attempts,
            alert.last_error,
        )

    def report(self) -> dict[str, Any]:
        """Return the panel's list: newest first, with the settings that shape it."""
        return {
            "webhookConfigured": bool(self.webhook_url),
            "quotaPercent": self.quota_percent,
            "data": [a.as_json() for a in reversed(self.kept)],
        }


async def run_watcher(
    alerts: Alerts, read_state: Callable[[], Any], every_s: float = CHECK_EVERY_S
) -> None:
    """Check the conditions every few seconds (a background task)."""
    while True:
        try:
            alerts.check(await read_state())
        except Exception:
            _LOGGER.exception("Checking the alert conditions failed")
        await asyncio.sleep(every_s)
