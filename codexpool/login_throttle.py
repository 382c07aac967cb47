"""In-memory sign-in throttling per (username, address), per address and per username.

Failures are counted in sliding windows; once a bucket is full the next attempt gets a 429
with `Retry-After` *before* bcrypt runs, so guessing costs the attacker time and us no CPU.
State is per process and lost on restart, which is acceptable for a single-node gateway; with
sharedState, SharedLoginThrottle keeps the failures in the database so guesses spread over
several nodes count together (routes call the async `guard`/`record_*` methods either way).

No bucket lets a stranger lock the owner out: failures count against the (username,
address) pair and the address, so guesses from elsewhere never refuse the owner's own
address. The per-username bucket slows guessing spread over many addresses, but it only
refuses addresses that themselves failed recently: an address with a clean record always
gets its attempt checked.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ApiError
from .store import Store

MAX_TRACKED = 10_000  # buckets kept at most; the least recently failed go first
MAX_WINDOW_S = 3600.0  # the longest window (registrations): stored failures older are deleted


@dataclass(frozen=True)
class Limit:
    """At most `count` failures per `window_s` seconds."""

    count: int
    window_s: float


class SlidingCounter:
    """Failure timestamps per key, bounded in keys and in entries per key."""

    def __init__(
        self, limit: Limit, clock: Callable[[], float] = time.monotonic, name: str = ""
    ) -> None:
        self.limit = limit
        self.name = name  # the bucket family, in stored bucket names (SharedLoginThrottle)
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def _live(self, key: str) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        cutoff = self._clock() - self.limit.window_s
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def retry_after(self, key: str) -> float:
        """Return seconds until `key` may try again (0 when it may now)."""
        hits = self._live(key)
        if hits is None or len(hits) < self.limit.count:
            return 0.0
        return max(0.0, hits[0] + self.limit.window_s - self._clock())

    def hit(self, key: str) -> None:
        """Count one failure for `key`."""
        hits = self._live(key)
        if hits is None:
            hits = self._hits[key] = deque(maxlen=self.limit.count)
        hits.append(self._clock())
        self._hits.move_to_end(key)
        while len(self._hits) > MAX_TRACKED:
            self._hits.popitem(last=False)

    def count(self, key: str) -> int:
        """Return how many failures of `key` are inside the window now."""
        hits = self._live(key)
        return 0 if hits is None else len(hits)

    def clear(self, key: str) -> None:
        """Forget `key`'s failures (after a successful sign-in)."""
        self._hits.pop(key, None)

    def load(self, key: str, stamps: list[float]) -> None:
        """Replace `key`'s failures with these times (oldest first), as stored for all nodes."""
        self._hits.pop(key, None)
        if stamps:
            self._hits[key] = deque(stamps[-self.limit.count :], maxlen=self.limit.count)


class LoginThrottle:
    """Sign-in guard: failures per (username, address), per address and per username.

    Defaults: 5 failures / 5 min per name on one address, 20 / 5 min per address, and 50 /
    5 min per name across all addresses (that last one only refuses addresses with failures
    of their own in the window).
    """

    def __init__(
        self,
        *,
        per_pair: Limit = Limit(5, 300.0),
        per_ip: Limit = Limit(20, 300.0),
        per_user: Limit = Limit(50, 300.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pairs = SlidingCounter(per_pair, clock, "pair")
        self._ips = SlidingCounter(per_ip, clock, "ip")
        self._users = SlidingCounter(per_user, clock, "user")
        # Registration is unauthenticated account creation: bound it per address too.
        self.registrations = RateGate(
            Limit(20, MAX_WINDOW_S),
            "too_many_registrations",
            "registrations from this address",
            clock,
        )

    def check(self, scope: str, username: str, ip: str) -> None:
        """Raise a 429 with Retry-After when this address (for this username) must wait."""
        user = f"{scope}:{username}"
        wait = max(self._pairs.retry_after(f"{user}\0{ip}"), self._ips.retry_after(ip))
        if self._ips.count(ip):  # the global name bucket never refuses a clean address
            wait = max(wait, self._users.retry_after(user))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"Too many failed sign-in attempts; try again in {seconds} seconds.",
                "too_many_attempts",
                headers={"Retry-After": str(seconds)},
            )

    def failed(self, scope: str, username: str, ip: str) -> None:
        """Count a failed attempt against the pair, the address and the username."""
        user = f"{scope}:{username}"
        self._pairs.hit(f"{user}\0{ip}")
        self._ips.hit(ip)
        self._users.hit(user)

    def succeeded(self, scope: str, username: str, ip: str) -> None:
        """Reset this address's failures for the username (the address keeps its own count)."""
        self._pairs.clear(f"{scope}:{username}\0{ip}")

    # The routes' entry points: async so that the shared throttle can use the database.
    async def guard(self, scope: str, username: str, ip: str) -> None:
        """Raise the 429 when this address (for this username) must wait."""
        self.check(scope, username, ip)

    async def record_failure(self, scope: str, username: str, ip: str) -> None:
        """Count a failed attempt."""
        self.failed(scope, username, ip)

    async def record_success(self, scope: str, username: str, ip: str) -> None:
        """Reset the pair's failures after a successful sign-in."""
        self.succeeded(scope, username, ip)

    async def take_registration(self, ip: str) -> None:
        """Count a registration from `ip`, or raise the 429 when its window is full."""
        self.registrations.take(ip)


def _bucket(kind: str, key: str) -> str:
    """Return the stored name of a bucket: a digest, so no username or address is stored."""
    return hashlib.sha256(f"{kind}\0{key}".encode()).hexdigest()[:32]


class SharedLoginThrottle(LoginThrottle):
    """The same buckets, with every failure stored in `login_failures` for all nodes.

    Before a decision the relevant buckets are loaded from the database into the in-memory
    counters (which then decide exactly as on one node); a failure is written for the pair,
    the address and the name. Wall-clock times, since they are compared across machines.
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self._store = store
        self._clock = clock

    def _keys(self, scope: str, username: str, ip: str) -> list[tuple[SlidingCounter, str]]:
        user = f"{scope}:{username}"
        return [(self._pairs, f"{user}\0{ip}"), (self._ips, ip), (self._users, user)]

    async def _load(self, pairs: list[tuple[SlidingCounter, str]]) -> None:
        buckets = {_bucket(c.name, k): (c, k) for c, k in pairs}
        window = max(c.limit.window_s for c, _ in pairs)
        marks = ", ".join("?" * len(buckets))
        rows = await self._store.fetchall(
            f"SELECT bucket, ts FROM login_failures WHERE bucket IN ({marks}) AND ts > ? "
            "ORDER BY ts",
            (*buckets, self._clock() - window),
        )
        stamps: dict[str, list[float]] = {b: [] for b in buckets}
        for r in rows:
            stamps[r["bucket"]].append(float(r["ts"]))
        for bucket, (counter, key) in buckets.items():
            counter.load(key, stamps[bucket])

    async def _store_hits(self, pairs: list[tuple[SlidingCounter, str]]) -> None:
        now = self._clock()
        await self._store.executemany(
            "INSERT INTO login_failures (bucket, ts) VALUES (?, ?)",
            [(_bucket(c.name, k), now) for c, k in pairs],
            bookkeeping=True,
        )
        await self._store.execute(
            "DELETE FROM login_failures WHERE ts < ?", (now - MAX_WINDOW_S,), bookkeeping=True
        )

    async def guard(self, scope: str, username: str, ip: str) -> None:
        """Load the buckets every node filled, then decide."""
        await self._load(self._keys(scope, username, ip))
        self.check(scope, username, ip)

    async def record_failure(self, scope: str, username: str, ip: str) -> None:
        """Count a failed attempt here and for every node."""
        self.failed(scope, username, ip)
        await self._store_hits(self._keys(scope, username, ip))

    async def record_success(self, scope: str, username: str, ip: str) -> None:
        """Reset the pair's failures here and for every node."""
        self.succeeded(scope, username, ip)
        counter, key = self._keys(scope, username, ip)[0]
        await self._store.execute(
            "DELETE FROM login_failures WHERE bucket = ?",
            (_bucket(counter.name, key),),
            bookkeeping=True,
        )

    async def take_registration(self, ip: str) -> None:
        """Count a registration from `ip` across nodes, or raise the 429."""
        pair = [(self.registrations.counter, ip)]
        await self._load(pair)
        self.registrations.take(ip)
        await self._store_hits(pair)


class RateGate:
    """A plain per-key rate limit (e.g. registrations per address)."""

    def __init__(
        self, limit: Limit, code: str, what: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.counter = SlidingCounter(limit, clock, code)
        self._code = code
        self._what = what

    def take(self, key: str) -> None:
        """Count one use of `key`, or raise a 429 with Retry-After when the window is full."""
        wait = self.counter.retry_after(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"Too many {self._what}; try again in {seconds} seconds.",
                self._code,
                headers={"Retry-After": str(seconds)},
            )
        self.counter.hit(key)
