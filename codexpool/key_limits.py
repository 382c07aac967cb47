"""Per-key limits: requests and tokens per UTC day, concurrent requests, allowed models.

The limits live on the key row and are copied when a key is rotated, and use is counted per
key *owner* (a user's key slot, or the master key slot), so rotating a key resets neither the
limits nor the day's count. Counting happens in memory: the first time an owner is seen in
this process its use so far today is loaded from the `requests` table once; from then on
admissions and finished requests update the counters, so the check on the request path costs
no database round trip. A request counts when it is admitted (whatever its outcome); its tokens
(input + output) count when it ends. Requests refused by these limits count for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from msgspec import Meta, Struct

from .errors import ApiError
from .store import Store
from .validate import WholeNumber, decode

SECONDS_PER_DAY = 86_400
MAX_LIMIT_VALUE = 1_000_000_000_000
MAX_ALLOWED_MODELS = 100
MAX_MODEL_NAME = 200

REQUESTS_EXCEEDED = "key_requests_per_day_exceeded"
TOKENS_EXCEEDED = "key_tokens_per_day_exceeded"
CONCURRENCY_EXCEEDED = "key_concurrency_exceeded"
MODEL_NOT_ALLOWED = "model_not_allowed"
# Rows with these codes were refused before any work and count for nothing.
REFUSAL_CODES = (REQUESTS_EXCEEDED, TOKENS_EXCEEDED, CONCURRENCY_EXCEEDED, MODEL_NOT_ALLOWED)

# JSON name -> column, in the order of KeyLimits' fields.
FIELDS = (
    ("requestsPerDay", "max_requests_per_day"),
    ("tokensPerDay", "max_tokens_per_day"),
    ("concurrentRequests", "max_concurrent"),
    ("allowedModels", "allowed_models"),
)
COLUMNS = ", ".join(column for _, column in FIELDS)

Owner = tuple[str, int | None]  # ("user", user id) or ("master", None)


@dataclass(frozen=True)
class KeyLimits:
    """The caps on one key; None means no cap."""

    requests_per_day: int | None = None
    tokens_per_day: int | None = None
    concurrent_requests: int | None = None
    allowed_models: tuple[str, ...] | None = None

    @classmethod
    def from_row(cls, row: Any) -> KeyLimits:
        """Read the limit columns of an api_keys row (sqlite Row or mapping)."""
        models = row["allowed_models"]
        return cls(
            row["max_requests_per_day"],
            row["max_tokens_per_day"],
            row["max_concurrent"],
            tuple(m for m in models.split("\n") if m) if models is not None else None,
        )

    def as_params(self) -> tuple[Any, ...]:
        """Return the column values in COLUMNS order (models newline-joined)."""
        models = "\n".join(self.allowed_models) if self.allowed_models is not None else None
        return (self.requests_per_day, self.tokens_per_day, self.concurrent_requests, models)

    def as_json(self) -> dict[str, Any]:
        """Return the camelCase API form."""
        return {
            "requestsPerDay": self.requests_per_day,
            "tokensPerDay": self.tokens_per_day,
            "concurrentRequests": self.concurrent_requests,
            "allowedModels": list(self.allowed_models) if self.allowed_models is not None else None,
        }

    def allows_model(self, *names: str) -> bool:
        """Tell whether any of the names a request's model goes by is allowed."""
        return self.allowed_models is None or any(n in self.allowed_models for n in names)


NO_LIMITS = KeyLimits()


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, "invalid_request", param=param)


class LimitValue(WholeNumber):
    low, high = 0, MAX_LIMIT_VALUE


class KeyLimitsChange(Struct, kw_only=True, forbid_unknown_fields=True):
    """The target (`username`, or `master: true`) and the new limits; a missing or null limit
    means no cap."""

    username: str | None = None
    master: bool | None = None
    requestsPerDay: LimitValue | None = None  # noqa: N815
    tokensPerDay: LimitValue | None = None  # noqa: N815
    concurrentRequests: LimitValue | None = None  # noqa: N815
    allowedModels: (  # noqa: N815
        Annotated[
            list[Annotated[str, Meta(min_length=1, max_length=MAX_MODEL_NAME)]],
            Meta(
                max_length=MAX_ALLOWED_MODELS,
                description="Distinct model ids (no line breaks); `[]` allows none, null any.",
            ),
        ]
        | None
    ) = None


def parse_limits(body: dict[str, Any] | KeyLimitsChange) -> KeyLimits:
    """Validate the limit fields of an admin request; a missing or null field means no cap."""
    if not isinstance(body, KeyLimitsChange):
        body = decode(body, KeyLimitsChange)
    models: tuple[str, ...] | None = None
    if body.allowedModels is not None:
        cleaned: list[str] = []
        for m in body.allowedModels:
            if not m.strip():
                raise _bad(
                    f"each allowedModels entry must be a model id of 1-{MAX_MODEL_NAME} characters",
                    "allowedModels",
                )
            if "\n" in m or m.strip() in cleaned:
                raise _bad(f"allowedModels entry {m!r} is repeated or malformed", "allowedModels")
            cleaned.append(m.strip())
        models = tuple(cleaned)

    def number(value: int | None) -> int | None:
        return None if value is None else int(value)

    return KeyLimits(
        number(body.requestsPerDay),
        number(body.tokensPerDay),
        number(body.concurrentRequests),
        models,
    )


def utc_day(ts: float) -> int:
    """Return the UTC calendar day (days since the epoch) that a Unix time falls on."""
    return int(ts // SECONDS_PER_DAY)


@dataclass
class OwnerUse:
    """An owner's use: counters for one UTC day plus requests in flight now."""

    day: int
    requests: int = 0
    tokens: int = 0
    in_flight: int = 0

    def as_json(self) -> dict[str, int]:
        """Return the camelCase API form."""
        return {"requests": self.requests, "tokens": self.tokens, "inFlight": self.in_flight}


class _Finisher(Protocol):
    def _finish(self, owner: Owner, day: int, tokens: int, slot: str | None) -> None: ...


class Ticket:
    """An admitted request; `finish(tokens)` must be called once when it ends.

    `slot` names its concurrency slot in the database when the state is shared
    (shared_quotas.py); the in-memory quotas need none.
    """

    __slots__ = ("_quotas", "_owner", "_day", "_slot", "_done")

    def __init__(self, quotas: _Finisher, owner: Owner, day: int, slot: str | None = None) -> None:
        self._quotas = quotas
        self._owner = owner
        self._day = day
        self._slot = slot
        self._done = False

    def finish(self, tokens: int = 0) -> None:
        """Release the concurrency slot and add the request's tokens (idempotent)."""
        if not self._done:
            self._done = True
            self._quotas._finish(self._owner, self._day, tokens, self._slot)


def check_model(limits: KeyLimits, model_names: Sequence[str]) -> None:
    """Raise the 403 `model_not_allowed` when the key may not use the request's model."""
    if model_names and not limits.allows_model(*model_names):
        allowed = ", ".join(limits.allowed_models or ()) or "none"
        raise ApiError(
            403,
            f"This API key may not use model {model_names[0]!r}; allowed: {allowed}.",
            MODEL_NOT_ALLOWED,
            param="model",
            type="permission_error",
        )


def cap_error(
    limits: KeyLimits, requests: int, tokens: int, in_flight: int, day: int, now: float
) -> ApiError | None:
    """Return the 429 naming the first cap one more request would break, or None."""
    tomorrow = str(max(1, int((day + 1) * SECONDS_PER_DAY - now) + 1))
    for cap, used, what, code, retry in (
        (limits.requests_per_day, requests, "requests per day (UTC)", REQUESTS_EXCEEDED, tomorrow),
        (limits.tokens_per_day, tokens, "tokens per day (UTC)", TOKENS_EXCEEDED, tomorrow),
        (limits.concurrent_requests, in_flight, "requests at once", CONCURRENCY_EXCEEDED, "1"),
    ):  # fmt: skip
        if cap is not None and used >= cap:
            when = "when one has finished" if retry == "1" else "after midnight UTC"
            return ApiError(
                429,
                f"This API key's limit of {cap} {what} is reached; retry {when}.",
                code,
                type="rate_limit_error",
                headers={"Retry-After": retry},
            )
    return None


_DAY_USE_SQL = (
    "SELECT k.kind, k.user_id, COUNT(*) AS n,"
    " COALESCE(SUM(COALESCE(r.input_tokens, 0) + COALESCE(r.output_tokens, 0)), 0) AS tokens"
    " FROM requests r JOIN api_keys k ON k.id = r.key_id"
    " WHERE r.ts >= ? AND (r.error_code IS NULL OR r.error_code NOT IN ({refusals}))"
    " {owner_filter} GROUP BY k.kind, k.user_id"
).replace("{refusals}", ", ".join(f"'{c}'" for c in REFUSAL_CODES))


class KeyQuotas:
    """Admits requests against their key's limits and keeps each owner's use in memory."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._use: dict[Owner, OwnerUse] = {}

    async def admit(
        self, owner: Owner, limits: KeyLimits, model_names: Sequence[str] = ()
    ) -> Ticket:
        """Count a request in, or raise the 403/429 that names the cap it would break."""
        check_model(limits, model_names)
        now = self._clock()
        use = await self._current(owner, now)
        refused = cap_error(limits, use.requests, use.tokens, use.in_flight, use.day, now)
        if refused is not None:
            raise refused
        use.requests += 1
        use.in_flight += 1
        return Ticket(self, owner, use.day)

    def _finish(self, owner: Owner, day: int, tokens: int, slot: str | None) -> None:
        use = self._use.get(owner)
        if use is None:
            return
        use.in_flight = max(0, use.in_flight - 1)
        if use.day == day:
            use.tokens += max(0, tokens)

    async def usage(self, owners: Iterable[Owner]) -> dict[Owner, OwnerUse]:
        """Return today's use of each owner (one query for all the ones not yet counted)."""
        now = self._clock()
        today = utc_day(now)
        wanted = list(owners)
        for owner in wanted:
            use = self._use.get(owner)
            if use is not None and use.day != today:
                self._roll(use, today)
        missing = [o for o in wanted if o not in self._use]
        if missing:
            loaded = await self._load(today, None)
            for owner in missing:
                self._use.setdefault(owner, loaded.get(owner) or OwnerUse(today))
        return {o: self._use[o] for o in wanted}

    async def usage_of(self, owner: Owner) -> OwnerUse:
        """Return today's use of one owner."""
        return (await self.usage([owner]))[owner]

    def forget(self, owner: Owner) -> None:
        """Drop an owner's counters (its user was deleted)."""
        self._use.pop(owner, None)

    async def _current(self, owner: Owner, now: float) -> OwnerUse:
        today = utc_day(now)
        use = self._use.get(owner)
        if use is None:
            loaded = (await self._load(today, owner)).get(owner) or OwnerUse(today)
            # Another request of the same owner may have loaded it while this one waited.
            use = self._use.setdefault(owner, loaded)
        if use.day != today:
            self._roll(use, today)
        return use

    @staticmethod
    def _roll(use: OwnerUse, today: int) -> None:
        use.day, use.requests, use.tokens = today, 0, 0

    async def _load(self, today: int, owner: Owner | None) -> dict[Owner, OwnerUse]:
        return await load_day_use(self._store, today, owner)


async def load_day_use(store: Store, today: int, owner: Owner | None) -> dict[Owner, OwnerUse]:
    """Count each owner's use today from the request log (one owner, or all with None)."""
    params: list[Any] = [today * SECONDS_PER_DAY]
    owner_filter = ""
    if owner is not None:
        owner_filter = "AND k.kind = ? AND k.user_id IS ?"
        params += [owner[0], owner[1]]
    rows = await store.fetchall(_DAY_USE_SQL.replace("{owner_filter}", owner_filter), params)
    return {(r["kind"], r["user_id"]): OwnerUse(today, int(r["n"]), int(r["tokens"])) for r in rows}
