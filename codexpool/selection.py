"""Eligibility and round-robin for the master key, as pure functions over in-memory data.

No I/O and no clock: callers pass `now`, so the rules are unit-testable and a selection costs
microseconds. `pool.Pool` holds the data (candidate index, limits, cooldowns) and the cursor.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .account_limits import Limits


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


@dataclass(frozen=True)
class Candidate:
    """A keyed user as the index saw them (limits and cooldowns are kept apart)."""

    user_id: int
    username: str
    codex_home: Path
    linked: bool
    opt_in: bool = True
    disabled: bool = False
    auth_mtime: float = 0.0

    def account(self) -> Account:
        """Return the engine-facing account."""
        return Account(self.user_id, self.username, self.codex_home)


@dataclass(frozen=True)
class Cooldown:
    """An account skipped until `until` (wall time) because a turn hit `reason`."""

    until: float
    reason: str  # "usage_limit" | "unauthorized"


def ineligible_reason(
    c: Candidate, lim: Limits | None, cooldown: Cooldown | None, now: float
) -> str | None:
    """Return why the master key may not use this account now, or None when it may."""
    if c.disabled:
        return "disabled"
    if not c.linked:
        return "not_linked"
    if not c.opt_in:
        return "opted_out"
    if cooldown is not None and cooldown.until > now:
        return "cooling_down"
    if lim is None:
        return "limits_unknown"
    hourly, weekly = lim.hourly_remaining(now), lim.weekly_remaining(now)
    if hourly is None or weekly is None:
        return "limits_unknown"
    if hourly <= 0:
        return "hourly_exhausted"
    if weekly <= 0:
        return "weekly_exhausted"
    return None


def available_at(lim: Limits | None, cooldown: Cooldown | None, now: float) -> float | None:
    """Return when time alone makes an exhausted or cooling account usable again, if known."""
    times: list[float] = []
    if cooldown is not None and cooldown.until > now:
        times.append(cooldown.until)
    if lim is not None:
        for used, resets in (
            (lim.primary_used, lim.primary_resets_at),
            (lim.secondary_used, lim.secondary_resets_at),
        ):
            if used is not None and used >= 100 and resets is not None and resets > now:
                times.append(float(resets))
    return max(times) if times else None  # every blocker must have lifted


@dataclass(frozen=True)
class PoolView:
    """Eligibility of every candidate at one moment, valid until `valid_until` (wall time)."""

    eligible: tuple[int, ...]  # user ids, ascending
    reasons: Mapping[int, str]  # ineligible user id -> why
    members: int  # linked, enabled, opted-in accounts (whatever their limits)
    unknown: tuple[int, ...]  # members whose limits were never read
    next_reset: float | None  # earliest time an exhausted or cooling member comes back
    valid_until: float


def build_view(
    candidates: Sequence[Candidate],
    limits: Mapping[int, Limits],
    cooldowns: Mapping[int, Cooldown],
    now: float,
) -> PoolView:
    """Decide every candidate's eligibility at `now` (pure: no I/O, no clock)."""
    eligible: list[int] = []
    reasons: dict[int, str] = {}
    unknown: list[int] = []
    members = 0
    next_reset: float | None = None
    valid_until = math.inf
    for c in candidates:
        lim = limits.get(c.user_id)
        cd = cooldowns.get(c.user_id)
        why = ineligible_reason(c, lim, cd, now)
        if why not in ("disabled", "not_linked", "opted_out"):
            members += 1
        if why is None:
            eligible.append(c.user_id)
            # An eligible account's windows may reset and be re-read; nothing to wait for.
            continue
        reasons[c.user_id] = why
        if why == "limits_unknown":
            unknown.append(c.user_id)
        back = available_at(lim, cd, now) if why != "limits_unknown" else None
        if back is not None and why in ("cooling_down", "hourly_exhausted", "weekly_exhausted"):
            next_reset = back if next_reset is None else min(next_reset, back)
            valid_until = min(valid_until, back)
    eligible.sort()
    return PoolView(tuple(eligible), reasons, members, tuple(unknown), next_reset, valid_until)


def pick(eligible: Sequence[int], last: int) -> int:
    """Return the first eligible id after `last`, wrapping around (round-robin by id)."""
    i = bisect.bisect_right(eligible, last)
    return eligible[i] if i < len(eligible) else eligible[0]
