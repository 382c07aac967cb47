"""An in-memory cache of API-key lookups, kept honest by the store's write generation."""

from __future__ import annotations

import time

from . import users
from .security import key_digest
from .store import Store
from .users import KeyPrincipal

KEY_CACHE_TTL_S = 5.0
KEY_CACHE_MAX = 10_000


class KeyCache:
    """Recently seen live keys, so most API requests skip the database round trip.

    An entry serves only while no process has written through a Store since it was filled (a
    rotation, a revocation, new limits or a deleted user, here or from the CLI, drops them all;
    see Store.change_stamp) and for at most `ttl_s`, a backstop for edits made with other
    tools. Unknown keys are never cached.
    """

    def __init__(self, store: Store, ttl_s: float = KEY_CACHE_TTL_S) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[KeyPrincipal, tuple[int, ...], float]] = {}

    async def lookup(self, key: str) -> KeyPrincipal | None:
        """Return the key's principal, from memory when it is still known to be current."""
        digest = key_digest(key)
        now = time.monotonic()
        stamp = self._store.change_stamp()
        hit = self._entries.get(digest)
        if hit is not None and hit[1] == stamp and hit[2] > now:
            return hit[0]
        principal = await users.lookup_digest(self._store, digest)
        if principal is None:
            self._entries.pop(digest, None)
            return None
        if len(self._entries) >= KEY_CACHE_MAX:
            self._entries.clear()
        self._entries[digest] = (principal, stamp, now + self._ttl_s)
        return principal
