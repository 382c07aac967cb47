"""Sign-in throttling: sliding windows per username and per address, Retry-After values."""

from __future__ import annotations

import pytest

from codexpool.errors import ApiError
from codexpool.throttle import Limit, LoginThrottle, RateGate, SlidingCounter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_username_bucket_fills_and_drains() -> None:
    clock = Clock()
    t = LoginThrottle(Limit(3, 60), Limit(100, 60), clock)
    for _ in range(3):
        t.check("portal", "alice", "1.2.3.4")
        t.failed("portal", "alice", "1.2.3.4")
    with pytest.raises(ApiError) as info:
        t.check("portal", "alice", "9.9.9.9")  # another address does not help
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "60"
    t.check("admin", "alice", "1.2.3.4")  # scopes are separate
    clock.now += 30
    with pytest.raises(ApiError) as info:
        t.check("portal", "alice", "1.2.3.4")
    assert info.value.headers["Retry-After"] == "30"
    clock.now += 30.5
    t.check("portal", "alice", "1.2.3.4")


def test_address_bucket_spans_usernames() -> None:
    t = LoginThrottle(Limit(100, 60), Limit(2, 60), Clock())
    t.failed("portal", "a", "5.5.5.5")
    t.failed("portal", "b", "5.5.5.5")
    with pytest.raises(ApiError):
        t.check("portal", "c", "5.5.5.5")
    t.check("portal", "c", "6.6.6.6")


def test_success_clears_username_only() -> None:
    t = LoginThrottle(Limit(2, 60), Limit(3, 60), Clock())
    t.failed("portal", "a", "ip")
    t.failed("portal", "a", "ip")
    t.succeeded("portal", "a")
    t.check("portal", "a", "other")
    t.failed("portal", "a", "ip")
    with pytest.raises(ApiError):
        t.check("portal", "z", "ip")  # the address still counts its 3 failures


def test_counter_is_bounded() -> None:
    counter = SlidingCounter(Limit(2, 60), Clock())
    for i in range(20_000):
        counter.hit(f"k{i}")
    assert len(counter._hits) <= 10_000


def test_rate_gate() -> None:
    gate = RateGate(Limit(2, 60), "too_many", "things", Clock())
    gate.take("x")
    gate.take("x")
    with pytest.raises(ApiError) as info:
        gate.take("x")
    assert info.value.code == "too_many"
    gate.take("y")
