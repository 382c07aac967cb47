"""Self-registered portal users who never linked an account expire after `unlinkedUserTtlHours`.

Registration is open, so throwaway registrations pile up (60 of them once each started a device
login). Their flows are bounded by `maxDeviceLogins` and end with their code; this removes the
registrations themselves. Deleting a user is irreversible, so a user is removed only when
nothing of value can be lost and nobody has shown a sign of life:

- they registered themselves on the portal (an audit `user.register` row at their creation);
  users the admin created (panel, `codexpool user add`) are never removed;
- their Codex home holds no login, and they never linked one (no `device.linked` audit row);
- they never had an API key (revoked ones count) and no request ever ran for them;
- they are not disabled (an admin decision, kept on purpose);
- they registered more than the TTL ago and did nothing recorded in the audit log since
  (sign-in, device login start, ...); no device login of theirs is running.
"""

from __future__ import annotations

import asyncio
import logging
import time

from . import admin_users, audit, linking, users
from .config import Settings
from .device_login import DeviceLogins
from .store import Store

_LOGGER = logging.getLogger(__name__)
SWEEP_EVERY_S = 3600.0
REGISTER_AUDIT_SLACK_S = 60.0  # the register audit row is written right after the user row

_CANDIDATES_SQL = """
SELECT u.id FROM users u
WHERE u.created_at < ?1 AND u.disabled = 0
  AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.user_id = u.id)
  AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.account_user_id = u.id)
  AND EXISTS (
      SELECT 1 FROM audit a WHERE a.action = 'user.register' AND a.target = u.username
        AND a.ts BETWEEN u.created_at - ?2 AND u.created_at + ?2)
  AND NOT EXISTS (
      SELECT 1 FROM audit a WHERE a.action = 'device.linked' AND a.target = u.username
        AND a.ts >= u.created_at - ?2)
  AND NOT EXISTS (
      SELECT 1 FROM audit a WHERE a.actor = 'user:' || u.username AND a.ts >= ?1)
  AND NOT EXISTS (SELECT 1 FROM account_logins l WHERE l.user_id = u.id)
ORDER BY u.id
"""


async def expired_registrations(
    store: Store, settings: Settings, logins: DeviceLogins, now: float
) -> list[users.User]:
    """Return the users `remove_expired_registrations` would remove at `now`."""
    ttl_s = settings.unlinked_user_ttl_hours * 3600
    if ttl_s <= 0:
        return []
    rows = await store.fetchall(_CANDIDATES_SQL, (now - ttl_s, REGISTER_AUDIT_SLACK_S))
    running = {flow.user_id for flow in logins.running()}
    found = []
    for row in rows:
        home = linking.codex_home(settings, row["id"])
        if row["id"] in running or (home / "auth.json").exists():
            continue  # a login is under way, or an auth.json of any kind is there: keep
        user = await users.get_user_by_id(store, row["id"])
        if user is not None:
            found.append(user)
    return found


async def remove_expired_registrations(
    store: Store, settings: Settings, logins: DeviceLogins, now: float | None = None
) -> list[str]:
    """Delete the expired registrations (see the module docstring); return their names."""
    removed = []
    for user in await expired_registrations(store, settings, logins, now or time.time()):
        await admin_users.delete_user(store, settings, logins, user)
        await audit.record(store, "system", "user.expire", user.username, "never linked")
        removed.append(user.username)
    if removed:
        _LOGGER.info("Removed %s registrations that never linked an account", len(removed))
    return removed


async def run_sweeper(store: Store, settings: Settings, logins: DeviceLogins) -> None:
    """Remove expired registrations once an hour (cancel to stop)."""
    while True:
        try:
            await remove_expired_registrations(store, settings, logins)
        except Exception:
            _LOGGER.exception("Sweeping unlinked registrations failed; retrying in an hour")
        await asyncio.sleep(SWEEP_EVERY_S)
