"""Sign-in throttling: sliding windows per username and per address, Retry-After values."""

from __future__ import annotations

import pytest

from codexpool.errors import ApiError
from codexpool.login_throttle import Limit, LoginThrottle, RateGate, SlidingCounter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pair_bucket_fills_and_drains() -> None:
    clock = Clock()
    t = LoginThrottle(per_pair=Limit(3, 60), per_ip=Limit(100, 60), clock=clock)
    for _ in range(3):
        t.check("portal", "alice", "1.2.3.4")
        t.failed("portal", "alice", "1.2.3.4")
    with pytest.raises(ApiError) as info:
        t.check("portal", "alice", "1.2.3.4")
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "60"
    t.check("admin", "alice", "1.2.3.4")  # scopes are separate
    t.check("portal", "bob", "1.2.3.4")  # so are other names from the same address
    clock.now += 30
    with pytest.raises(ApiError) as info:
        t.check("portal", "alice", "1.2.3.4")
    assert info.value.headers["Retry-After"] == "30"
    clock.now += 30.5
    t.check("portal", "alice", "1.2.3.4")


def test_failures_elsewhere_never_lock_out_a_clean_address() -> None:
    """Issue 14 item 3: five wrong passwords from anywhere used to lock the owner out for five
    minutes (renewable by one request a minute); a clean address must always get its try."""
    clock = Clock()
    t = LoginThrottle(clock=clock)  # the defaults the server runs with
    for i in range(200):  # an attacker spread over many addresses, renewing every minute
        t.failed("admin", "admin", f"10.0.{i // 5}.1")
        clock.now += 1
    t.check("admin", "admin", "192.168.1.7")  # the owner's own address: not refused
    with pytest.raises(ApiError):  # but the global name bucket slows addresses that failed
        t.check("admin", "admin", "10.0.39.1")


def test_address_bucket_spans_usernames() -> None:
    t = LoginThrottle(per_pair=Limit(100, 60), per_ip=Limit(2, 60), clock=Clock())
    t.failed("portal", "a", "5.5.5.5")
    t.failed("portal", "b", "5.5.5.5")
    with pytest.raises(ApiError):
        t.check("portal", "c", "5.5.5.5")
    t.check("portal", "c", "6.6.6.6")


def test_username_bucket_refuses_only_addresses_that_failed() -> None:
    t = LoginThrottle(
        per_pair=Limit(100, 60), per_ip=Limit(100, 60), per_user=Limit(3, 60), clock=Clock()
    )
    for ip in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        t.failed("portal", "alice", ip)
    with pytest.raises(ApiError):
        t.check("portal", "alice", "1.1.1.1")
    t.check("portal", "alice", "4.4.4.4")
    t.check("portal", "bob", "1.1.1.1")


def test_success_clears_the_pair_only() -> None:
    t = LoginThrottle(per_pair=Limit(2, 60), per_ip=Limit(3, 60), clock=Clock())
    t.failed("portal", "a", "ip")
    t.failed("portal", "a", "ip")
    t.succeeded("portal", "a", "ip")
    t.check("portal", "a", "ip")
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
