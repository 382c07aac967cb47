"""In-memory sign-in throttling per username and per client address.

Failures are counted in a sliding window; once a bucket is full the next attempt gets a 429
with `Retry-After` *before* bcrypt runs, so guessing costs the attacker time and us no CPU.
State is per process and lost on restart, which is acceptable for a single-node gateway.
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

    def clear(self, key: str) -> None:
        """Forget `key`'s failures (after a successful sign-in)."""
        self._hits.pop(key, None)


class LoginThrottle:
    """Sign-in guard: 5 failures / 5 min per username, 20 / 5 min per client address."""

    def __init__(
        self,
        per_user: Limit = Limit(5, 300.0),
        per_ip: Limit = Limit(20, 300.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = SlidingCounter(per_user, clock)
        self._ips = SlidingCounter(per_ip, clock)
        # Registration is unauthenticated account creation: bound it per address too.
        self.registrations = RateGate(
            Limit(20, 3600.0), "too_many_registrations", "registrations from this address", clock
        )

    def check(self, scope: str, username: str, ip: str) -> None:
        """Raise a 429 with Retry-After when this username or address must wait."""
        wait = max(self._users.retry_after(f"{scope}:{username}"), self._ips.retry_after(ip))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"Too many failed sign-in attempts; try again in {seconds} seconds.",
                "too_many_attempts",
                headers={"Retry-After": str(seconds)},
            )

    def failed(self, scope: str, username: str, ip: str) -> None:
        """Count a failed attempt against the username and the address."""
        self._users.hit(f"{scope}:{username}")
        self._ips.hit(ip)

    def succeeded(self, scope: str, username: str) -> None:
        """Reset the username's failures (the address keeps its count)."""
        self._users.clear(f"{scope}:{username}")


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
