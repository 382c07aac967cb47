"""The JSON answers of the routes, declared once as msgspec types for the OpenAPI document.

The handlers build these objects as plain dicts (the hot paths encode with orjson); the types
here say what they hold, and the fuzz tests (tests/test_fuzz_api.py) check every real answer
against the document made from them. A field without a default is always present; `X | None`
may be null. Unknown keys are allowed (`additionalProperties` is not closed), as clients
must tolerate new members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

# --- shared -----------------------------------------------------------------------------------


class ErrorDetail(Struct, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None
    source: Literal["gateway", "upstream"]


class Error(Struct, kw_only=True):
    """OpenAI's error object; `source` says who produced it."""

    error: ErrorDetail


class Ok(Struct, kw_only=True):
    ok: Literal[True]


class OkUser(Struct, kw_only=True):
    ok: Literal[True]
    username: str


class SseEvent(Struct, kw_only=True):
    """One server-sent event (the schema describes each event of the stream): `data` is a JSON
    object, or `[DONE]` as the chat stream's last event; `event` names the Responses API's
    event types. `: ping` comment lines are keep-alives. A failure after the stream started
    is one event whose data is the error body, then the end."""

    data: str
    event: str | None = None


class KeyLimits(Struct, kw_only=True):
    """A key's caps; null means no cap."""

    requestsPerDay: int | None  # noqa: N815
    tokensPerDay: int | None  # noqa: N815
    concurrentRequests: int | None  # noqa: N815
    allowedModels: list[str] | None  # noqa: N815


class KeyUsage(Struct, kw_only=True):
    """A key slot's use today (UTC)."""

    requests: int
    tokens: int
    inFlight: int  # noqa: N815


class KeySummary(Struct, kw_only=True):
    """What the panels show of a live key, never the key (users.key_summary)."""

    exists: bool
    label: str | None
    hint: str | None
    createdAt: float | None  # noqa: N815
    lastUsedAt: float | None  # noqa: N815
    limits: KeyLimits | None
    usageToday: KeyUsage | None  # noqa: N815


class KeyFields(Struct, kw_only=True):
    """A KeySummary as members of a user object (users.key_fields)."""

    hasKey: bool  # noqa: N815
    keyLabel: str | None  # noqa: N815
    keyHint: str | None  # noqa: N815
    keyCreatedAt: float | None  # noqa: N815
    keyLastUsedAt: float | None  # noqa: N815
    keyLimits: KeyLimits | None  # noqa: N815
    keyUsageToday: KeyUsage | None  # noqa: N815


class IssuedKey(Struct, kw_only=True):
    """A new key, shown this once."""

    key: str
    label: str
    hint: str
    createdAt: float  # noqa: N815


class AccountLimits(Struct, kw_only=True):
    """An account's ChatGPT usage limits as last read."""

    hourlyRemaining: float | None  # noqa: N815
    hourlyResetsAt: float | None  # noqa: N815
    hourlyWindowMins: float | None  # noqa: N815
    weeklyRemaining: float | None  # noqa: N815
    weeklyResetsAt: float | None  # noqa: N815
    weeklyWindowMins: float | None  # noqa: N815
    limitsFetchedAt: float | None  # noqa: N815
    limitsAgeSeconds: float | None  # noqa: N815
    limitsStale: bool | None  # noqa: N815
    limitsError: str | None  # noqa: N815


class DeviceStatus(Struct, kw_only=True):
    """A user's device-login state."""

    state: Literal["idle", "starting", "awaiting_user", "linked", "failed", "expired", "cancelled"]
    verificationUrl: str | None  # noqa: N815
    userCode: str | None  # noqa: N815
    startedAt: float | None  # noqa: N815
    expiresAt: float | None  # noqa: N815
    finishedAt: float | None  # noqa: N815
    logs: list[str]
    linked: bool
    error: str | None


# --- admin ------------------------------------------------------------------------------------


class AdminMe(Struct, kw_only=True):
    authenticated: Literal[True]
    role: Literal["admin"]
    username: str


class _AdminUserOwn(Struct, kw_only=True):
    id: int
    username: str
    createdAt: float  # noqa: N815
    linked: bool
    lastUsedAt: float | None  # noqa: N815
    requestsServed: int  # noqa: N815
    poolOptIn: bool  # noqa: N815
    disabled: bool
    eligible: bool | None
    ineligibleReason: str | None  # noqa: N815
    coolingDownUntil: float | None  # noqa: N815
    coolingDownReason: str | None  # noqa: N815
    instructionsFallbackAt: float | None  # noqa: N815


def _merged(name: str, doc: str, *parts: type[Struct]) -> Any:
    """A struct with the fields of every part (msgspec structs take one base with fields)."""
    fields = [(f.name, f.type) for part in parts for f in msgspec.structs.fields(part)]
    kind = msgspec.defstruct(name, fields, kw_only=True, module=__name__)
    kind.__doc__ = doc
    return kind


if TYPE_CHECKING:

    class AdminUserRow(_AdminUserOwn, kw_only=True):
        """One portal user of the admin table (its own, key and limit fields)."""

else:
    AdminUserRow = _merged(
        "AdminUserRow",
        "One portal user of the admin table.",
        _AdminUserOwn,
        KeyFields,
        AccountLimits,
    )


class UserTotals(Struct, kw_only=True):
    hourlyRemaining: float  # noqa: N815
    weeklyRemaining: float  # noqa: N815
    linked: int
    keyed: int
    users: int
    eligible: int | None
    nextResetAt: float | None  # noqa: N815


class LeasedAccount(Struct, kw_only=True):
    userId: int  # noqa: N815
    heldForS: float  # noqa: N815
    expiresInS: float  # noqa: N815


class ClusterNode(Struct, kw_only=True):
    id: str
    url: str
    self: bool
    live: bool
    heartbeatAgeS: float  # noqa: N815
    startedAt: float  # noqa: N815
    accounts: list[LeasedAccount]


class ClusterState(Struct, kw_only=True):
    """Cluster mode only (`clusterSecret`): the nodes on the database, the accounts each owns
    and the ages of their leases, as this node read them at its last tick."""

    nodeId: str  # noqa: N815
    leaseSeconds: float  # noqa: N815
    database: Literal["ok", "unavailable"]
    nodes: list[ClusterNode]


class UserTable(Struct, kw_only=True):
    """The portal user table, totals and the master key summary."""

    users: list[AdminUserRow]
    totals: UserTotals
    masterKey: KeySummary  # noqa: N815
    cluster: ClusterState | None = None  # cluster mode only


class RevealedKey(Struct, kw_only=True):
    username: str
    key: str
    label: str
    hint: str
    createdAt: float  # noqa: N815


class UserDeleted(Struct, kw_only=True):
    ok: Literal[True]
    username: str
    deleted: Literal[True]


class KeyLimitsSet(Struct, kw_only=True):
    target: str
    limits: KeyLimits
    usageToday: KeyUsage  # noqa: N815


class AuditRow(Struct, kw_only=True):
    id: int
    ts: float
    actor: str
    action: str
    target: str | None
    detail: str | None
    ip: str | None


class AuditLog(Struct, kw_only=True):
    data: list[AuditRow]


class UsageSums(Struct, kw_only=True):
    requests: int
    errors: int
    inputTokens: int  # noqa: N815
    cachedTokens: int  # noqa: N815
    cacheHitShare: float | None  # noqa: N815
    outputTokens: int  # noqa: N815
    reasoningTokens: int  # noqa: N815
    avgLatencyMs: float | None  # noqa: N815
    avgTtftMs: float | None  # noqa: N815


class AccountDay(UsageSums, kw_only=True):
    day: str
    userId: int | None  # noqa: N815
    username: str | None


class KeyDay(UsageSums, kw_only=True):
    day: str
    keyId: int | None  # noqa: N815
    keyKind: Literal["user", "master", "session"]  # noqa: N815
    keyHint: str | None  # noqa: N815
    keyLabel: str | None  # noqa: N815
    username: str | None


class AdminUsage(Struct, kw_only=True):
    days: int
    since: float
    byAccount: list[AccountDay]  # noqa: N815
    byKey: list[KeyDay]  # noqa: N815
    totals: UsageSums


class UserKeyDay(UsageSums, kw_only=True):
    day: str


class ServedDay(UsageSums, kw_only=True):
    day: str
    poolRequests: int  # noqa: N815


class UserUsage(Struct, kw_only=True):
    days: int
    since: float
    byKey: list[UserKeyDay]  # noqa: N815
    servedByAccount: list[ServedDay]  # noqa: N815


class RequestRow(Struct, kw_only=True):
    """One request of the log; never its prompt or answer."""

    id: int
    requestId: str | None  # noqa: N815
    ts: float
    startedAt: float | None  # noqa: N815
    endpoint: str
    keyKind: str | None  # noqa: N815
    user: str | None
    userId: int | None  # noqa: N815
    account: str | None
    accountId: int | None  # noqa: N815
    model: str | None
    effort: str | None
    stream: bool
    status: int
    errorCode: str | None  # noqa: N815
    errorSource: str | None  # noqa: N815
    errorMessage: str | None  # noqa: N815
    ttftMs: float | None  # noqa: N815
    durationMs: float | None  # noqa: N815
    inputTokens: int | None  # noqa: N815
    cachedTokens: int | None  # noqa: N815
    outputTokens: int | None  # noqa: N815
    reasoningTokens: int | None  # noqa: N815


class RequestPage(Struct, kw_only=True):
    object: Literal["list"]
    data: list[RequestRow]
    hasMore: bool  # noqa: N815
    nextCursor: str | None  # noqa: N815


class QuotaPoint(Struct, kw_only=True):
    ts: float
    hourlyUsed: float | None  # noqa: N815
    weeklyUsed: float | None  # noqa: N815


class QuotaReset(Struct, kw_only=True):
    window: Literal["hourly", "weekly"]
    at: int


class QuotaWindow(Struct, kw_only=True):
    used: float | None
    resetsAt: int | None  # noqa: N815
    ratePerHour: float | None  # noqa: N815
    exhaustsAt: float | None  # noqa: N815
    resetsFirst: bool | None  # noqa: N815


class AccountQuota(Struct, kw_only=True):
    accountId: int  # noqa: N815
    account: str | None
    points: list[QuotaPoint]
    resets: list[QuotaReset]
    hourly: QuotaWindow
    weekly: QuotaWindow


class PoolPoint(Struct, kw_only=True):
    ts: float
    left: float | None


class PoolWindow(Struct, kw_only=True):
    known: int
    accountsLeft: float  # noqa: N815
    accountsPerHour: float  # noqa: N815
    exhaustsAt: float | None  # noqa: N815
    series: list[PoolPoint]


class PoolQuota(Struct, kw_only=True):
    accounts: int
    hourly: PoolWindow
    weekly: PoolWindow


class QuotaHistory(Struct, kw_only=True):
    hours: int
    since: float
    now: float
    accounts: list[AccountQuota]
    pool: PoolQuota


class Alert(Struct, kw_only=True):
    id: int
    kind: str
    text: str
    account: str | None
    at: float
    state: Literal["pending", "retrying", "delivered", "failed", "not_sent"]
    attempts: int
    lastError: str | None  # noqa: N815
    nextAttemptAt: float | None  # noqa: N815
    deliveredAt: float | None  # noqa: N815


class AlertList(Struct, kw_only=True):
    webhookConfigured: bool  # noqa: N815
    quotaPercent: int  # noqa: N815
    data: list[Alert]


class UsageMetrics(Struct, kw_only=True):
    requests: list[int]
    errors: list[int]
    inputTokens: list[int]  # noqa: N815
    cachedTokens: list[int]  # noqa: N815
    outputTokens: list[int]  # noqa: N815


class UsageGroup(UsageMetrics, kw_only=True):
    id: int | None
    name: str


class UsageSeries(Struct, kw_only=True):
    bucket: Literal["hour", "day"]
    by: Literal["account", "key"]
    starts: list[float]
    groups: list[UsageGroup]
    totals: UsageMetrics
    cacheHitShare: float | None  # noqa: N815


# --- portal -----------------------------------------------------------------------------------


class PortalMe(KeyFields, kw_only=True):
    """The signed-in user's account, key summary, limits and device-login state."""

    authenticated: Literal[True]
    username: str
    createdAt: float  # noqa: N815
    linked: bool
    poolOptIn: bool  # noqa: N815
    limits: AccountLimits
    poolEligible: bool  # noqa: N815
    poolIneligibleReason: str | None  # noqa: N815
    device: DeviceStatus


class OptedIn(Struct, kw_only=True):
    ok: Literal[True]
    poolOptIn: bool  # noqa: N815


class Unlinked(Struct, kw_only=True):
    ok: Literal[True]
    linked: Literal[False]
    wasLinked: bool  # noqa: N815


# --- OpenAI-compatible ------------------------------------------------------------------------


class CompletionMessage(Struct, kw_only=True):
    role: Literal["assistant"]
    content: str | None
    refusal: None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class CompletionChoice(Struct, kw_only=True):
    index: int
    message: CompletionMessage
    finish_reason: Literal["stop", "tool_calls", "length"]
    logprobs: None = None


class PromptTokensDetails(Struct, kw_only=True):
    cached_tokens: int


class CompletionTokensDetails(Struct, kw_only=True):
    reasoning_tokens: int


class CompletionUsage(Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class ChatCompletion(Struct, kw_only=True):
    """A `chat.completion` object."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    system_fingerprint: None = None


class ResponseObject(Struct, kw_only=True):
    """A `response` object (Responses API)."""

    id: str
    object: Literal["response"]
    status: str
    output: list[Any]


class Model(Struct, kw_only=True):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[Model]


class Mode(Struct, kw_only=True):
    id: str
    object: Literal["mode"]
    effort: str


class ModeList(Struct, kw_only=True):
    object: Literal["list"]
    data: list[Mode]
    reasoning_efforts: list[str]


class ExecuteResult(Struct, kw_only=True):
    """The run's final message, items and usage."""

    finalMessage: str | None  # noqa: N815
    items: list[dict[str, Any]]
    usage: dict[str, Any] | None
    threadId: str | None  # noqa: N815
    exitCode: int | None  # noqa: N815


# --- operations -------------------------------------------------------------------------------


class CodexBinary(Struct, kw_only=True):
    found: bool
    path: str | None


class AccountCounts(Struct, kw_only=True):
    linked: int
    eligible: int


class Health(Struct, kw_only=True):
    """Anonymous callers get status and ready only; the rest needs the metrics token or an
    admin session."""

    status: Literal["ok", "degraded"]
    ready: bool
    version: str | None = None
    database: Literal["ok", "unreachable"] | None = None
    codex: CodexBinary | None = None
    accounts: AccountCounts | None = None
    codexProcesses: int | None = None  # noqa: N815
    cluster: ClusterState | None = None  # cluster mode only


OpenApiDocument = Annotated[dict[str, Any], Meta(title="OpenApiDocument")]
