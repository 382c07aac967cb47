"""In-memory sign-in throttling per (username, address), per address and per username.

Failures are counted in sliding windows; once a bucket is full the next attempt gets a 429
with `Retry-After` *before* bcrypt runs, so guessing costs the attacker time and us no CPU.
State is per process and lost on restart, which is acceptable for a single-node gateway.

No bucket lets a stranger lock the owner out: failures count against the (username,
address) pair and the address, so guesses from elsewhere never refuse the owner's own
address. The per-username bucket slows guessing spread over many addresses, but it only
refuses addresses that themselves failed recently: an address with a clean record always
gets its attempt checked.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ApiError

MAX_TRACKED = 10_000  # buckets kept at most; the least recently failed go first


@dataclass(frozen=True)
class Limit:
    """At most `count` failures per `window_s` seconds."""

    count: int
    window_s: float


class SlidingCounter:
    """Failure timestamps per key, bounded in keys and in entries per key."""

    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
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
        self._pairs = SlidingCounter(per_pair, clock)
        self._ips = SlidingCounter(per_ip, clock)
        self._users = SlidingCounter(per_user, clock)
        # Registration is unauthenticated account creation: bound it per address too.
        self.registrations = RateGate(
            Limit(20, 3600.0), "too_many_registrations", "registrations from this address", clock
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


class RateGate:
    """A plain per-key rate limit (e.g. registrations per address)."""

    def __init__(
        self, limit: Limit, code: str, what: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._counter = SlidingCounter(limit, clock)
        self._code = code
        self._what = what

    def take(self, key: str) -> None:
        """Count one use of `key`, or raise a 429 with Retry-After when the window is full."""
        wait = self._counter.retry_after(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"Too many {self._what}; try again in {seconds} seconds.",
                self._code,
                headers={"Retry-After": str(seconds)},
            )
        self._counter.hit(key)
