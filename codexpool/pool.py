"""Which linked account serves a request: the key owner's, or the next eligible one in the pool.

Selection is two pure functions over in-memory data, so the master key's hot path touches
neither SQLite nor the disk:

- `build_view(candidates, limits, cooldowns, now)` decides eligibility for every account once
  and says until when that answer holds (the next cooldown end or window reset);
- `pick(eligible_ids, last_id)` is round-robin by account id: the next eligible id after the
  one served last. Keyed by id rather than by position, it stays fair while accounts join or
  leave: over N requests each of K eligible accounts serves N/K rounded up or down.

The candidate index (keyed users with their link, opt-in and disabled flags) is reloaded from
the database on a short TTL and at once after in-process key, link or user changes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from . import linking
from .account_limits import LimitCache, Limits, Target
from .codex.events import TurnError
from .config import Settings
from .errors import ApiError
from .observe import SERVED_ACCOUNT
from .selection import (
    Account,
    Candidate,
    Cooldown,
    PoolView,
    available_at,
    build_view,
    ineligible_reason,
    pick,
)
from .store import Store
from .users import KeyPrincipal

_LOGGER = logging.getLogger(__name__)

INDEX_TTL_S = 2.0  # picks up changes made by the CLI in another process
USAGE_LIMIT_FALLBACK_S = 300.0  # cooldown when a usage-limit error names no reset time
UNAUTHORIZED_COOLDOWN_S = 600.0  # a lost login needs a relink; retried after this anyway


def _retry_after(at: float, now: float) -> str:
    return str(max(1, math.ceil(at - now)))


def _when(at: float, now: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
    return f"{stamp} (unix {int(at)}, in {max(1, math.ceil(at - now))} s)"


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error("Reloading the pool index failed: %s", task.exception())


@dataclass
class _Index:
    candidates: tuple[Candidate, ...] = ()
    by_id: dict[int, Candidate] = field(default_factory=dict)
    loaded_at: float = -math.inf  # monotonic


class Pool:
    """Resolves principals to accounts; owns the candidate index, cooldowns and the cursor."""

    def __init__(self, settings: Settings, store: Store, limits: LimitCache | None = None) -> None:
        self._settings = settings
        self._store = store
        self._limits = limits
        self._index = _Index()
        self._reload: asyncio.Task[None] | None = None
        self._generation = 0
        self._account_objects: dict[tuple[int, str], Account] = {}
        self._view: PoolView | None = None
        self._last = -1  # id of the account served last by the master key
        # account user id -> until when it is skipped (usage limit, lost login)
        self.cooldowns: dict[int, Cooldown] = {}
        # With sharedState cooldowns are also written to account_cooldowns and read back with
        # the index, so every node skips an account one of them found spent.
        self.shared = settings.shares_state
        self._tasks: set[asyncio.Task[None]] = set()
        if limits is not None:
            limits.on_change = self._limits_changed

    # --- index ---------------------------------------------------------------------------
    def account_for(self, user_id: int, username: str) -> Account:
        """Return the account of one user (immutable, so built once: paths cost per request)."""
        key = (user_id, username)
        account = self._account_objects.get(key)
        if account is None:
            if len(self._account_objects) >= 10_000:
                self._account_objects.clear()
            account = Account(user_id, username, linking.codex_home(self._settings, user_id))
            self._account_objects[key] = account
        return account

    def invalidate(self) -> None:
        """Reload the candidate index on next use (keys, links, opt-in or users changed)."""
        self._index.loaded_at = -math.inf
        self._generation += 1  # a reload already running read the old data: not good enough

    async def reload(self) -> None:
        """Reload the index now (another node changed keys, users or cooldowns)."""
        self.invalidate()
        await self._load_index()

    async def _load_shared_cooldowns(self) -> bool:
        """Merge the cooldowns other nodes stored; tell whether any changed."""
        now = time.time()
        rows = await self._store.fetchall(
            "SELECT user_id, until_ts, reason FROM account_cooldowns WHERE until_ts > ?", (now,)
        )
        changed = False
        for r in rows:
            cd = Cooldown(float(r["until_ts"]), str(r["reason"]))
            mine = self.cooldowns.get(r["user_id"])
            if mine is None or mine.until < cd.until:
                self.cooldowns[r["user_id"]] = cd
                changed = True
        return changed

    async def _store_cooldown(self, user_id: int, cd: Cooldown | None) -> None:
        try:
            if cd is None:
                await self._store.execute(
                    "DELETE FROM account_cooldowns WHERE user_id = ?", (user_id,)
                )
            else:
                await self._store.execute(
                    "INSERT INTO account_cooldowns (user_id, until_ts, reason) VALUES (?, ?, ?) "
                    "ON CONFLICT (user_id) DO UPDATE SET until_ts = excluded.until_ts, "
                    "reason = excluded.reason",
                    (user_id, cd.until, cd.reason),
                )
        except Exception as exc:  # this node still skips it; the others read its limits
            _LOGGER.warning("Cannot store the cooldown of account %s: %s", user_id, exc)

    def _share_cooldown(self, user_id: int, cd: Cooldown | None) -> None:
        if not self.shared:
            return
        task = asyncio.get_running_loop().create_task(
            self._store_cooldown(user_id, cd), name="pool-cooldown"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait for cooldown writes under way (shutdown)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _load_index(self) -> None:
        generation = self._generation
        changed = await self._load_shared_cooldowns() if self.shared else False
        rows = await self._store.fetchall(
            "SELECT u.id, u.username, u.pool_opt_in, u.disabled FROM users u "
            "JOIN api_keys k ON k.user_id = u.id AND k.kind = 'user' AND k.revoked_at IS NULL "
            "ORDER BY u.id"
        )
        old = self._index.by_id
        candidates = []
        for r in rows:
            home = linking.codex_home(self._settings, r["id"])
            try:
                mtime = (home / "auth.json").stat().st_mtime
            except OSError:
                mtime = 0.0
            c = Candidate(
                r["id"],
                r["username"],
                home,
                bool(mtime) and linking.is_linked(home),
                bool(r["pool_opt_in"]),
                bool(r["disabled"]),
                mtime,
            )
            prev = old.get(c.user_id)
            cd = self.cooldowns.get(c.user_id)
            if cd and cd.reason == "unauthorized" and prev and prev.auth_mtime != mtime:
                del self.cooldowns[c.user_id]  # relinked: try the new login at once
                if self.shared:  # before the next reload could merge it back
                    await self._store_cooldown(c.user_id, None)
                changed = True
            candidates.append(c)
        loaded_at = time.monotonic() if generation == self._generation else -math.inf
        changed = changed or tuple(candidates) != self._index.candidates
        self._index = _Index(tuple(candidates), {c.user_id: c for c in candidates}, loaded_at)
        if changed:  # an unchanged index keeps the view (a full pass costs ~1 ms per 1,000)
            self._view = None

    async def candidates(self) -> tuple[Candidate, ...]:
        """Return the keyed users, reloading the index when it is older than its TTL.

        Only the first load is awaited by callers; later reloads run in the background and
        requests keep using the previous index meanwhile.
        """
        for _ in range(3):  # a reload that raced an invalidation is redone
            if time.monotonic() - self._index.loaded_at < INDEX_TTL_S:
                break
            if self._reload is None or self._reload.done():
                self._reload = asyncio.create_task(self._load_index(), name="pool-index")
                self._reload.add_done_callback(_log_failure)
            if self._index.by_id and self._index.loaded_at != -math.inf:
                break  # merely old: keep serving from it while it reloads
            await asyncio.shield(self._reload)
        return self._index.candidates

    async def targets(self) -> list[Target]:
        """Return the accounts whose limits the refresher keeps fresh (keyed, linked, enabled)."""
        return [
            Target(c.user_id, c.codex_home)
            for c in await self.candidates()
            if c.linked and not c.disabled
        ]

    # --- eligibility ---------------------------------------------------------------------
    def _limits_changed(self, user_id: int) -> None:
        """Keep the view when an eligible account stays eligible (the push after every turn).

        Only a change of eligibility (or of an ineligible account's reset time) needs the full
        pass, so the hot path stays O(1) even with a push per request.
        """
        view = self._view
        c = self._index.by_id.get(user_id)
        if view is None or c is None or user_id in view.reasons:
            self._view = None if c is not None else view
            return
        lim = self._limits.get(user_id) if self._limits is not None else None
        if ineligible_reason(c, lim, self.cooldowns.get(user_id), time.time()) is not None:
            self._view = None

    def view(self, now: float | None = None) -> PoolView:
        """Return the current eligibility view, rebuilt only when something changed."""
        now = time.time() if now is None else now
        view = self._view
        if view is None or now >= view.valid_until:
            self.cooldowns = {k: v for k, v in self.cooldowns.items() if v.until > now}
            limits = self._limits.snapshot() if self._limits is not None else {}
            view = build_view(self._index.candidates, limits, self.cooldowns, now)
            self._view = view
        return view

    def select(
        self,
        now: float | None = None,
        exclude: frozenset[int] = frozenset(),
        prefer: int | None = None,
    ) -> Account | None:
        """Pick the master key's next account from memory (the hot path: no I/O)."""
        eligible = self.view(now).eligible
        if exclude:  # failover: skip the accounts this request already tried
            eligible = tuple(u for u in eligible if u not in exclude)
        if not eligible:
            return None
        if prefer is not None and prefer in eligible:  # a conversation's own account
            return self._index.by_id[prefer].account()
        self._last = pick(eligible, self._last)
        return self._index.by_id[self._last].account()

    async def linked_accounts(self) -> list[Account]:
        """Return every keyed, linked, opted-in, enabled account, by id."""
        return [
            c.account() for c in await self.candidates() if c.linked and c.opt_in and not c.disabled
        ]

    async def eligible_count(self) -> int:
        """Return how many accounts the master key could use right now."""
        await self.candidates()
        return len(self.view().eligible)

    def limits_of(self, user_id: int) -> Limits | None:
        """Return an account's cached limits."""
        return self._limits.get(user_id) if self._limits is not None else None

    def cooldown_of(self, user_id: int, now: float | None = None) -> Cooldown | None:
        """Return the account's active cooldown, if any."""
        cd = self.cooldowns.get(user_id)
        return cd if cd is not None and cd.until > (now or time.time()) else None

    # --- choosing --------------------------------------------------------------------------
    async def choose(
        self,
        principal: KeyPrincipal,
        exclude: frozenset[int] = frozenset(),
        prefer: int | None = None,
    ) -> Account:
        """Return the account that serves this principal's next request, or raise why none.

        `prefer` (an account user id) wins over the master key's rotation while it is eligible:
        a continued conversation stays on the account that holds its thread.
        """
        if principal.kind == "user":
            assert principal.user_id is not None and principal.username is not None
            account = self._own_account(principal.user_id, principal.username)
        else:
            account = await self._pool_account(exclude, prefer)
        SERVED_ACCOUNT.set(account.username)  # for the access log line
        return account

    def _own_account(self, user_id: int, username: str) -> Account:
        account = self.account_for(user_id, username)
        if not linking.is_linked(account.codex_home):
            raise ApiError(
                403,
                "This key's owner has no linked ChatGPT account; link one on the portal "
                "(/openai) first.",
                "account_not_linked",
            )
        self.ensure_not_exhausted(user_id, "This key's ChatGPT account")
        return account

    def ensure_not_exhausted(self, user_id: int, whose: str = "This ChatGPT account") -> None:
        """Raise 429 `account_exhausted` (with its reset) when the account is known spent."""
        now = time.time()
        lim = self.limits_of(user_id)
        cd = self.cooldown_of(user_id, now)
        if cd is not None and cd.reason != "usage_limit":
            cd = None  # a lost login is reported by the turn itself, with its own message
        back = available_at(lim, cd, now)
        if back is not None:
            raise ApiError(
                429,
                f"{whose} has used up its Codex limit; it resets at {_when(back, now)}.",
                "account_exhausted",
                headers={"Retry-After": _retry_after(back, now)},
            )

    async def _pool_account(self, exclude: frozenset[int], prefer: int | None = None) -> Account:
        await self.candidates()
        account = self.select(exclude=exclude, prefer=prefer)
        if account is None and self._limits is not None and self.view().unknown:
            # Accounts never read yet (just linked, fresh start): read them now, once.
            view = self.view()
            await asyncio.gather(
                *(
                    self._limits.refresh(Target(uid, self._index.by_id[uid].codex_home))
                    for uid in view.unknown
                    if uid in self._index.by_id
                ),
                return_exceptions=True,
            )
            account = self.select(exclude=exclude)
        if account is None:
            raise self.exhausted_error()
        return account

    def exhausted_error(self) -> ApiError:
        """Return the error for a master-key request no account can serve."""
        now = time.time()
        view = self.view(now)
        if view.members == 0:
            return ApiError(
                503,
                "No linked accounts: link a ChatGPT account on the portal (/openai) and give it "
                "a key before using the master key.",
                "no_linked_accounts",
            )
        if view.next_reset is not None:
            return ApiError(
                429,
                f"The pool is exhausted: all {view.members} pool accounts have used up their "
                f"Codex limits or are cooling down; the earliest resets at "
                f"{_when(view.next_reset, now)}.",
                "pool_exhausted",
                headers={"Retry-After": _retry_after(view.next_reset, now)},
            )
        return ApiError(
            503,
            "The Codex limits of the pool's accounts could not be read, so none can be used "
            "yet; retry shortly (see the server log).",
            "limits_unavailable",
            source="upstream",
            headers={"Retry-After": "5"},
        )

    def mark_failed(self, account: Account, exc: TurnError) -> bool:
        """Cool an account down after a usage-limit or lost-login failure; tell if it was."""
        now = time.time()
        if exc.kind == "usage_limit":
            until = float(exc.resets_at) if exc.resets_at and exc.resets_at > now else None
            cd = Cooldown(until or now + USAGE_LIMIT_FALLBACK_S, "usage_limit")
        elif exc.kind == "unauthorized":
            cd = Cooldown(now + UNAUTHORIZED_COOLDOWN_S, "unauthorized")
        else:
            return False
        self.cooldowns[account.user_id] = cd
        self._view = None
        self._share_cooldown(account.user_id, cd)
        _LOGGER.warning(
            "Account %s (%s) cooled down until %s: %s",
            account.username,
            account.user_id,
            time.strftime("%H:%M:%S", time.gmtime(cd.until)),
            exc.kind,
        )
        return True
