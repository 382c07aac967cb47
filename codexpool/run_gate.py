"""Admission of execute runs: a few at once in the gateway, one per key at a time.

Every `codex exec` run is a process of its own (about 100 MiB with its children), so without a
bound one key could start as many as it sends requests (40 concurrent runs made 40 processes
and 4 GiB). The portal quick test goes through the same gate: it runs on the account's warm
app-server and starts no process, so it takes only its owner's one-at-a-time place, never one
of the gateway's `executeMaxConcurrent` run places.
"""

from __future__ import annotations

from collections import Counter

from .errors import ApiError
from .key_limits import Owner

RETRY_AFTER_S = 5  # a run takes seconds to minutes; polling faster only costs 429s
GATEWAY_FULL = "execute_capacity_reached"
OWNER_BUSY = "execute_in_progress"


class RunPass:
    """A place taken in the gate; `release()` gives it back (idempotent)."""

    __slots__ = ("_gate", "_owner", "_spawns", "_done")

    def __init__(self, gate: RunGate, owner: Owner, spawns: bool) -> None:
        self._gate, self._owner, self._spawns, self._done = gate, owner, spawns, False

    def release(self) -> None:
        """Free the owner's place (and the run place, if it took one)."""
        if not self._done:
            self._done = True
            self._gate._release(self._owner, self._spawns)


class RunGate:
    """At most `max_runs` process-spawning runs at once, and one run per key owner."""

    def __init__(self, max_runs: int, refusals: Counter[str] | None = None) -> None:
        self.max_runs = max_runs
        self.runs = 0
        self._owners: set[Owner] = set()
        self._refusals = refusals if refusals is not None else Counter()

    def enter(self, owner: Owner, *, spawns_process: bool = True) -> RunPass:
        """Take the owner's place (and a run place), or raise the 429 that says which is full."""
        if owner in self._owners:
            self._refusals[OWNER_BUSY] += 1
            raise ApiError(
                429,
                "This key already has a run in progress; retry when it has finished.",
                OWNER_BUSY,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if spawns_process and self.runs >= self.max_runs:
            self._refusals[GATEWAY_FULL] += 1
            raise ApiError(
                429,
                f"The server already runs its maximum of {self.max_runs} execute runs "
                "(executeMaxConcurrent); retry shortly.",
                GATEWAY_FULL,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self._owners.add(owner)
        if spawns_process:
            self.runs += 1
        return RunPass(self, owner, spawns_process)

    def _release(self, owner: Owner, spawns: bool) -> None:
        self._owners.discard(owner)
        if spawns:
            self.runs -= 1
