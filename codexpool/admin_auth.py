"""The admin's credentials as held in memory: a bcrypt hash and a session fence.

`adminPassword` may be a bcrypt hash or a plain value; a plain one is hashed once at start-up
so sign-in always compares against a hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass

from .config import Settings
from .security import constant_time_equal, hash_password, is_bcrypt_hash, verify_password
from .store import Store


@dataclass
class AdminAuth:
    """The admin's name, password hash and session fence."""

    username: str
    password_hash: str
    fingerprint: str  # changes when the credentials setting changes: old cookies die
    not_before: float = 0.0  # admin cookies issued earlier are void (moved by logout)

    async def verify(self, username: str, password: str) -> bool:
        """Check a sign-in (bcrypt runs in a thread; a wrong name still costs one check)."""
        name_ok = constant_time_equal(username, self.username)
        pw_ok = await asyncio.to_thread(verify_password, password, self.password_hash)
        return name_ok and pw_ok


def admin_fingerprint(session_secret: str, username: str, password_setting: str) -> str:
    """Return a short keyed digest of the admin credentials setting."""
    msg = f"{username}\0{password_setting}".encode()
    return hmac.new(session_secret.encode(), msg, hashlib.sha256).hexdigest()[:24]


async def load_admin_auth(settings: Settings, store: Store) -> AdminAuth:
    """Build the admin credentials, hashing a plain password off the loop."""
    configured = settings.admin_password
    if is_bcrypt_hash(configured):
        hashed = configured
    else:
        hashed = await asyncio.to_thread(hash_password, configured)
    return AdminAuth(
        username=settings.admin_username,
        password_hash=hashed,
        fingerprint=admin_fingerprint(settings.session_secret, settings.admin_username, configured),
        not_before=await last_admin_logout(store),
    )


async def last_admin_logout(store: Store) -> float:
    """Return when the admin last logged out, on any node: the audit log keeps it across
    restarts, and other nodes reload it when the shared state changes (change_feed.py)."""
    row = await store.fetchone("SELECT MAX(ts) AS ts FROM audit WHERE action = 'admin.logout'")
    return float(row["ts"]) if row and row["ts"] is not None else 0.0
