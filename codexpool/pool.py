"""Which linked account serves a request: the key owner's, or the next eligible one in the pool.

Selection is a pure function over a snapshot of accounts, so it is cheap, testable without a
server, and fair: a round-robin cursor over the eligible accounts sorted by id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import linking
from .accounts import KeyPrincipal
from .config import Settings
from .errors import ApiError
from .observe import SERVED_ACCOUNT
from .store import Store


@dataclass(frozen=True)
class Account:
    """A linked ChatGPT account as the engine sees it."""

    user_id: int
    username: str
    codex_home: Path

    @property
    def key(self) -> str:
        """Return the engine's account key."""
        return str(self.user_id)


class Pool:
    """Resolves principals to accounts; holds the round-robin cursor of the master key."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._cursor = 0
        # account user id -> monotonic time until which it is skipped (usage limit, lost login)
        self.cooldowns: dict[int, float] = {}

    def account_for(self, user_id: int, username: str) -> Account:
        """Return the account of one user."""
        return Account(user_id, username, linking.codex_home(self._settings, user_id))

    async def linked_accounts(self) -> list[Account]:
        """Return every keyed, linked, opted-in, enabled account, by id."""
        rows = await self._store.fetchall(
            "SELECT u.id, u.username FROM users u JOIN api_keys k ON k.user_id = u.id "
            "AND k.kind = 'user' AND k.revoked_at IS NULL "
            "WHERE u.disabled = 0 AND u.pool_opt_in = 1 ORDER BY u.id"
        )
        accounts = [self.account_for(r["id"], r["username"]) for r in rows]
        return [a for a in accounts if linking.is_linked(a.codex_home)]

    async def eligible_count(self) -> int:
        """Return how many accounts the master key could use right now."""
        now = time.monotonic()
        return sum(
            1 for a in await self.linked_accounts() if self.cooldowns.get(a.user_id, 0) <= now
        )

    async def choose(self, principal: KeyPrincipal) -> Account:
        """Return the account that serves this principal's next request, or raise why none."""
        if principal.kind == "user":
            assert principal.user_id is not None and principal.username is not None
            account = self.account_for(principal.user_id, principal.username)
            if not linking.is_linked(account.codex_home):
                raise ApiError(
                    403,
                    "This key's owner has no linked ChatGPT account; link one on the portal "
                    "(/openai) first.",
                    "account_not_linked",
                )
            SERVED_ACCOUNT.set(account.username)  # for the access log line
            return account
        now = time.monotonic()
        eligible = [
            a for a in await self.linked_accounts() if self.cooldowns.get(a.user_id, 0) <= now
        ]
        if not eligible:
            raise ApiError(
                503,
                "No linked accounts: link a ChatGPT account on the portal (/openai) and give it "
                "a key before using the master key.",
                "no_linked_accounts",
            )
        account = eligible[self._cursor % len(eligible)]
        self._cursor += 1
        SERVED_ACCOUNT.set(account.username)  # for the access log line
        return account
