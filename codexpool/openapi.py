"""The OpenAPI 3.1 description of every route, served at `GET /api/openapi.json`.

Written by hand from the handlers (not generated from them), so it says what they really accept:
- Only the key-limits body sets `additionalProperties: false`, because only its handler refuses
  unknown fields; every other handler ignores them (OpenAI clients send many optional fields).
- `required` lists only what a handler refuses to run without; types and bounds are the ones
  the handler checks (a value outside them is a 400 naming the field in `error.param`).
- Every non-2xx answer is the OpenAI-style error body (`default` response), whatever the status.

`tests/test_openapi.py` keeps the set of (method, path) equal to the router's, and the fuzz tests
(`tests/test_fuzz_api.py`) send generated requests to the real server and check the answers
against this document.
"""

from __future__ import annotations

import copy
from typing import Any

from . import __version__
from .audit import DEFAULT_LIMIT, MAX_LIMIT
from .key_limits import MAX_ALLOWED_MODELS, MAX_LIMIT_VALUE, MAX_MODEL_NAME
from .openai.translate import MAX_MESSAGES, REASONING_EFFORTS, REASONING_MODES, ROLES
from .request_log import DEFAULT_LIMIT as LOG_DEFAULT_LIMIT
from .request_log import MAX_LIMIT as LOG_MAX_LIMIT
from .routes.quicktest import MAX_PROMPT_CHARS as QUICK_PROMPT_CHARS
from .usage_report import DEFAULT_DAYS, MAX_DAYS
from .users import MAX_LABEL_LEN, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN

Schema = dict[str, Any]

# --- schema helpers ---------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    """Allow `null` besides the schema (OpenAPI 3.1 / JSON Schema style)."""
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(required: tuple[str, ...] = (), **props: Schema) -> Schema:
    """An object with these properties; unknown keys stay allowed (see the module doc)."""
    schema: Schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
N_STR = _nullable(STR)
N_NUM = _nullable(NUM)
N_INT = _nullable(INT)
N_BOOL = _nullable(BOOL)


def _closed(required: tuple[str, ...] = (), /, **props: Schema) -> Schema:
    """A response object whose keys are exactly these (all always present)."""
    return {
        "type": "object",
        "properties": props,
        "required": list(required or props),
    }


# --- components -------------------------------------------------------------------------------

_REQUEST_ROW: Schema = {
    "type": "object",
    "description": "One request of the log; never its prompt or answer.",
    "properties": {
        "id": INT,
        "requestId": N_STR,
        "ts": NUM,
        "startedAt": N_NUM,
        "endpoint": STR,
        "keyKind": N_STR,
        "user": N_STR,
        "userId": N_INT,
        "account": N_STR,
        "accountId": N_INT,
        "model": N_STR,
        "effort": N_STR,
        "stream": BOOL,
        "status": INT,
        "errorCode": N_STR,
        "errorSource": N_STR,
        "errorMessage": N_STR,
        "ttftMs": N_NUM,
        "durationMs": N_NUM,
        "inputTokens": N_INT,
        "cachedTokens": N_INT,
        "outputTokens": N_INT,
        "reasoningTokens": N_INT,
    },
}
_REQUEST_ROW["required"] = list(_REQUEST_ROW["properties"])


_QUOTA_WINDOW: Schema = _closed(
    used=N_NUM, resetsAt=N_INT, ratePerHour=N_NUM, exhaustsAt=N_NUM, resetsFirst=N_BOOL
)
_POOL_WINDOW: Schema = _closed(
    known=INT,
    accountsLeft=NUM,
    accountsPerHour=NUM,
    exhaustsAt=N_NUM,
    series={"type": "array", "items": _closed(ts=NUM, left=N_NUM)},
)
_QUOTA_HISTORY: Schema = _closed(
    hours=INT,
    since=NUM,
    now=NUM,
    accounts={
        "type": "array",
        "items": _closed(
            accountId=INT,
            account=N_STR,
            points={
                "type": "array",
                "items": _closed(ts=NUM, hourlyUsed=N_NUM, weeklyUsed=N_NUM),
            },
            resets={
                "type": "array",
                "items": _closed(window={"enum": ["hourly", "weekly"]}, at=INT),
            },
            hourly=_QUOTA_WINDOW,
            weekly=_QUOTA_WINDOW,
        ),
    },
    pool=_closed(accounts=INT, hourly=_POOL_WINDOW, weekly=_POOL_WINDOW),
)


_USAGE_METRICS: dict[str, Schema] = {
    m: {"type": "array", "items": INT}
    for m in ("requests", "errors", "inputTokens", "cachedTokens", "outputTokens")
}
_USAGE_SERIES: Schema = _closed(
    bucket={"enum": ["hour", "day"]},
    by={"enum": ["account", "key"]},
    starts={"type": "array", "items": NUM},
    groups={"type": "array", "items": _closed(id=N_INT, name=STR, **_USAGE_METRICS)},
    totals=_closed(**_USAGE_METRICS),
    cacheHitShare=N_NUM,
)
_USAGE_SERIES_PARAMS: list[dict[str, Any]] = [
    {"name": "bucket", "in": "query", "required": False, "schema": {"enum": ["hour", "day"]}},
    {"name": "by", "in": "query", "required": False, "schema": {"enum": ["account", "key"]}},
    {
        "name": "count",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 366},
        "description": "Buckets: hours 1-168 (default 24), days 1-366 (default 14).",
    },
]


def _request_log_op(summary: str, tag: str, security: Any, admin: bool) -> dict[str, Any]:
    """The request log's GET operation (admin: every request; portal: the user's own)."""
    params: list[dict[str, Any]] = []
    if admin:
        for name, what in (("user", "whose key made it"), ("account", "which account served it")):
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": STR,
                    "description": f"Username {what}; 404 `user_not_found` if none.",
                }
            )
    params += [
        {
            "name": "status",
            "in": "query",
            "required": False,
            "schema": {"enum": ["2xx", "4xx", "5xx"]},
        },
        *(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": STR,
                "description": "Unix seconds or an ISO 8601 time (UTC without an offset).",
            }
            for name in ("since", "until")
        ),
        _int_query("limit", 1, LOG_MAX_LIMIT, LOG_DEFAULT_LIMIT),
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "schema": STR,
            "description": "`nextCursor` of the previous page.",
        },
    ]
    return {
        "get": _op(
            summary,
            tag,
            security,
            {
                "200": _json(
                    _closed(
                        object={"const": "list"},
                        data={"type": "array", "items": _REQUEST_ROW},
                        hasMore=BOOL,
                        nextCursor=N_STR,
                    )
                )
            },
            params=params,
            description="Newest first. 400 for an unknown parameter or a bad value.",
        )
    }


_LIMIT_FIELDS: dict[str, Schema] = {
    "hourlyRemaining": N_NUM,
    "hourlyResetsAt": N_NUM,
    "hourlyWindowMins": N_NUM,
    "weeklyRemaining": N_NUM,
    "weeklyResetsAt": N_NUM,
    "weeklyWindowMins": N_NUM,
    "limitsFetchedAt": N_NUM,
    "limitsAgeSeconds": N_NUM,
    "limitsStale": N_BOOL,
    "limitsError": N_STR,
}

_SUMS: dict[str, Schema] = {
    "requests": INT,
    "errors": INT,
    "inputTokens": INT,
    "cachedTokens": INT,
    "cacheHitShare": N_NUM,
    "outputTokens": INT,
    "reasoningTokens": INT,
    "avgLatencyMs": N_NUM,
    "avgTtftMs": N_NUM,
}

_TOOL_NAME: Schema = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"}

_TOOL_CALL: Schema = _obj(
    ("id", "type", "function"),
    id=STR,
    type={"const": "function"},
    function=_obj(("name", "arguments"), name=STR, arguments=STR),
)

_IMAGE_URL: Schema = {
    "type": "string",
    "pattern": "^(https://|data:image/(png|jpeg|gif|webp)(;[^,]*)?;base64,)",
    "description": "A base64 data URL of a PNG, JPEG, GIF or WebP image (10 MiB), or an https "
    "URL the gateway downloads first (public addresses only; maxImageBytes, "
    "maxImageBytesPerRequest, imageFetchTimeoutMs, at most 3 redirects).",
}
_CONTENT_PART: Schema = {
    "anyOf": [
        STR,
        _obj(("type", "text"), type={"enum": ["text", "input_text", "output_text"]}, text=STR),
        _obj(("type",), type={"const": "refusal"}, refusal=STR),
        _obj(
            ("type", "image_url"),
            type={"enum": ["image_url", "input_image"]},
            image_url={"anyOf": [_IMAGE_URL, _obj(("url",), url=_IMAGE_URL)]},
        ),
        _obj(
            ("type", "file"),
            type={"const": "file"},
            file={
                **_obj(filename=STR, file_data=STR),
                "description": "A text file as a base64 data URL (or base64) in `file_data`, "
                "inlined into the prompt; other files and `file_id` get a 400.",
            },
        ),
    ]
}

_MESSAGE: Schema = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"enum": list(ROLES)},
        "content": {
            "description": "Text, or a list of parts (`text`, `input_text`, `output_text`, "
            "`refusal`, `image_url`, `input_image`, `file`; plain strings count as text).",
            "anyOf": [STR, {"type": "null"}, {"type": "array", "items": _CONTENT_PART}],
        },
        "name": STR,
        "tool_call_id": STR,
        "tool_calls": {"type": "array", "items": _TOOL_CALL},
    },
}

_TOOL: Schema = _obj(
    ("type", "function"),
    type={"const": "function"},
    function=_obj(
        ("name",),
        name=_TOOL_NAME,
        description=STR,
        parameters={"type": "object"},
    ),
)

_TOKEN_LIMIT: Schema = _nullable({"type": "integer", "minimum": 1, "maximum": 10_000_000})

_TOOL_CHOICE_NOTE = (
    "`none` hides the tools from the model; `required` and a named function become an "
    "instruction in the thread's instructions (Codex always asks the model with `auto`)."
)

CHAT_REQUEST: Schema = _obj(
    ("model", "messages"),
    model={"type": "string", "minLength": 1, "examples": ["codex"]},
    messages={
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_MESSAGES,
        "items": _MESSAGE,
        "description": "At least one message besides system/developer ones, and some text "
        "that is not blank; at most 8 images in all.",
    },
    stream=N_BOOL,
    stream_options=_nullable(_obj(include_usage=BOOL)),
    n=_nullable({"const": 1}),
    tools={"type": "array", "items": _TOOL},
    tool_choice={
        "anyOf": [
            {"enum": ["auto", "none", "required"]},
            _obj(("function",), type=STR, function=_obj(("name",), name=STR)),
        ],
        "description": _TOOL_CHOICE_NOTE,
    },
    response_format={
        "anyOf": [
            _obj(("type",), type={"enum": ["text", "json_object"]}),
            _obj(
                ("type", "json_schema"),
                type={"const": "json_schema"},
                json_schema=_obj(("schema",), name=STR, schema={"type": "object"}),
            ),
        ]
    },
    max_tokens=_TOKEN_LIMIT,
    max_completion_tokens=_TOKEN_LIMIT,
    max_output_tokens=_TOKEN_LIMIT,
    timeoutMs=_nullable({"type": "integer", "minimum": 1, "maximum": 86_400_000}),
    reasoning_effort=_nullable({"enum": list(REASONING_EFFORTS)}),
    reasoning=_obj(effort={"enum": list(REASONING_EFFORTS)}),
    reasoning_mode=_nullable({"enum": list(REASONING_MODES)}),
)

RESPONSES_REQUEST: Schema = _obj(
    ("model", "input"),
    model={"type": "string", "minLength": 1, "examples": ["codex"]},
    instructions=N_STR,
    input={
        "anyOf": [
            STR,
            {
                "type": "array",
                "items": {
                    "anyOf": [
                        _obj(
                            ("role", "content"),
                            type={"const": "message"},
                            role={"enum": ["user", "assistant", "system", "developer"]},
                            content={
                                "anyOf": [
                                    STR,
                                    {
                                        "type": "array",
                                        "items": _obj(
                                            ("type",),
                                            type={
                                                "enum": [
                                                    "input_text",
                                                    "output_text",
                                                    "text",
                                                    "input_image",
                                                    "input_file",
                                                ]
                                            },
                                            text=STR,
                                            image_url=STR,
                                            filename=STR,
                                            file_data={
                                                **STR,
                                                "description": "input_file: a text file as a "
                                                "base64 data URL (or base64), inlined into the "
                                                "prompt; other files get a 400",
                                            },
                                        ),
                                    },
                                ]
                            },
                        ),
                        _obj(
                            ("type", "call_id", "name"),
                            type={"const": "function_call"},
                            call_id=STR,
                            name=STR,
                            arguments=STR,
                        ),
                        _obj(
                            ("type", "call_id", "output"),
                            type={"const": "function_call_output"},
                            call_id=STR,
                            output=STR,
                        ),
                    ]
                },
            },
        ]
    },
    stream=N_BOOL,
    previous_response_id={
        **N_STR,
        "description": "Continue the conversation that response ended (on its thread while it "
        "is kept); unknown or expired: 400 `previous_response_not_found`.",
    },
    store={"type": ["boolean", "null"], "description": "false: not kept for previous_response_id"},
    tools={
        "type": "array",
        "items": _obj(
            ("type", "name"),
            type={"const": "function"},
            name=_TOOL_NAME,
            parameters={"type": "object"},
        ),
    },
    tool_choice={
        "anyOf": [
            {"enum": ["auto", "none", "required"]},
            _obj(("type", "name"), type={"const": "function"}, name=STR),
        ],
        "description": _TOOL_CHOICE_NOTE,
    },
    reasoning=_obj(effort={"enum": list(REASONING_EFFORTS)}),
    timeoutMs=_nullable({"type": "integer", "minimum": 1, "maximum": 86_400_000}),
    max_output_tokens=_TOKEN_LIMIT,
    text=_obj(
        format={
            "anyOf": [
                _obj(("type",), type={"enum": ["text", "json_object"]}),
                _obj(
                    ("type", "schema"),
                    type={"const": "json_schema"},
                    name=STR,
                    schema={"type": "object"},
                    strict=BOOL,
                ),
            ],
            "description": "Like chat's `response_format`: a `json_schema` becomes the turn's "
            "output schema (structured output), `json_object` asks for one JSON object.",
        }
    ),
)

USAGE_OBJECT: Schema = _closed(
    prompt_tokens=INT,
    completion_tokens=INT,
    total_tokens=INT,
    prompt_tokens_details=_closed(cached_tokens=INT),
    completion_tokens_details=_closed(reasoning_tokens=INT),
)

CHAT_COMPLETION: Schema = _obj(
    ("id", "object", "created", "model", "choices", "usage"),
    id=STR,
    object={"const": "chat.completion"},
    created=INT,
    model=STR,
    system_fingerprint={"type": "null"},
    choices={
        "type": "array",
        "items": _obj(
            ("index", "message", "finish_reason"),
            index=INT,
            message=_obj(
                ("role", "content"),
                role={"const": "assistant"},
                content=N_STR,
                refusal={"type": "null"},
                reasoning_content=STR,
                tool_calls={"type": "array", "items": {"type": "object"}},
            ),
            logprobs={"type": "null"},
            finish_reason={"enum": ["stop", "tool_calls", "length"]},
        ),
    },
    usage=USAGE_OBJECT,
)

SSE: Schema = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": STR, "event": STR},
    "description": "One server-sent event (the schema describes each event of the stream): "
    "`data` is a JSON object, or `[DONE]` as the chat stream's last event; `event` names the "
    "Responses API's event types. `: ping` comment lines are keep-alives. A failure after the "
    "stream started is one event whose data is the error body, then the end.",
}

DEVICE_STATUS: Schema = _closed(
    state={
        "enum": ["idle", "starting", "awaiting_user", "linked", "failed", "expired", "cancelled"]
    },
    verificationUrl=N_STR,
    userCode=N_STR,
    startedAt=N_NUM,
    expiresAt=N_NUM,
    finishedAt=N_NUM,
    logs={"type": "array", "items": STR},
    linked=BOOL,
    error=N_STR,
)

ISSUED_KEY: Schema = _closed(key=STR, label=STR, hint=STR, createdAt=NUM)

_LIMIT_VALUE: Schema = _nullable({"type": "integer", "minimum": 0, "maximum": MAX_LIMIT_VALUE})
_MODEL_IDS: Schema = _nullable(
    {
        "type": "array",
        "maxItems": MAX_ALLOWED_MODELS,
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_NAME},
        "description": "Distinct model ids (no line breaks); `[]` allows none, null any.",
    }
)
KEY_LIMITS: Schema = _closed(
    requestsPerDay=_LIMIT_VALUE,
    tokensPerDay=_LIMIT_VALUE,
    concurrentRequests=_LIMIT_VALUE,
    allowedModels=_MODEL_IDS,
)
KEY_USAGE: Schema = _closed(requests=INT, tokens=INT, inFlight=INT)
KEY_LIMITS_REQUEST: Schema = {
    **_obj(
        username=STR,
        master=N_BOOL,
        requestsPerDay=_LIMIT_VALUE,
        tokensPerDay=_LIMIT_VALUE,
        concurrentRequests=_LIMIT_VALUE,
        allowedModels=_MODEL_IDS,
    ),
    # The one handler that refuses unknown fields (a typo would silently lift a limit).
    "additionalProperties": False,
    "description": "The target (`username`, or `master: true`) and the new limits; a missing "
    "or null limit means no cap.",
}

ADMIN_USER_ROW: Schema = _closed(
    id=INT,
    username=STR,
    createdAt=NUM,
    linked=BOOL,
    hasKey=BOOL,
    keyLabel=N_STR,
    keyHint=N_STR,
    keyCreatedAt=N_NUM,
    **_LIMIT_FIELDS,
    keyLimits=_nullable(_ref("KeyLimits")),
    keyUsageToday=_nullable(_ref("KeyUsage")),
    lastUsedAt=N_NUM,
    requestsServed=INT,
    poolOptIn=BOOL,
    disabled=BOOL,
    eligible=N_BOOL,
    ineligibleReason=N_STR,
    coolingDownUntil=N_NUM,
    coolingDownReason=N_STR,
    instructionsFallbackAt=N_NUM,
)

# Anonymous callers get status and ready only; the rest needs the metrics token or the admin.
HEALTH: Schema = _closed(
    ("status", "ready"),
    status={"enum": ["ok", "degraded"]},
    ready=BOOL,
    version=STR,
    database={"enum": ["ok", "unreachable"]},
    codex=_closed(found=BOOL, path=N_STR),
    accounts=_closed(linked=INT, eligible=INT),
    codexProcesses=INT,
)

ERROR: Schema = _closed(
    error=_closed(
        message=STR,
        type=STR,
        param=N_STR,
        code=N_STR,
        source={"enum": ["gateway", "upstream"]},
    )
)

COMPONENTS: dict[str, Any] = {
    "schemas": {
        "Error": ERROR,
        "ChatRequest": CHAT_REQUEST,
        "ChatCompletion": CHAT_COMPLETION,
        "ResponsesRequest": RESPONSES_REQUEST,
        "DeviceStatus": DEVICE_STATUS,
        "IssuedKey": ISSUED_KEY,
        "KeyLimits": KEY_LIMITS,
        "KeyUsage": KEY_USAGE,
        "Health": HEALTH,
        "Ok": _obj(("ok",), ok={"const": True}),
    },
    "responses": {
        "Error": {
            "description": "OpenAI-style error; `error.code` says what went wrong, `error.param` "
            "names the offending field of a 400, `error.source` who produced it (also in the "
            "`x-codexpool-error-source` header). A 429 carries `Retry-After`.",
            "content": {"application/json": {"schema": _ref("Error")}},
        },
    },
    "securitySchemes": {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "A user key (runs on its owner's account) or the master key (the "
            "pool). `x-api-key: <key>` works too.",
        },
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "adminSession": {
            "type": "apiKey",
            "in": "cookie",
            "name": "codexpool_session",
            "description": "The session cookie with an admin sign-in (`POST /api/auth/login`).",
        },
        "portalSession": {
            "type": "apiKey",
            "in": "cookie",
            "name": "codexpool_session",
            "description": "The session cookie with a portal sign-in "
            "(`POST /api/openai/auth/login` or `register`).",
        },
        "metricsToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "The `metricsToken` setting.",
        },
    },
}

# --- operations -------------------------------------------------------------------------------

NONE: list[dict[str, list[str]]] = []
ADMIN: list[dict[str, list[str]]] = [{"adminSession": []}]
PORTAL: list[dict[str, list[str]]] = [{"portalSession": []}]
API_KEY: list[dict[str, list[str]]] = [{"apiKey": []}, {"apiKeyHeader": []}]


def _json(schema: Schema, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: Schema, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    tag: str,
    security: list[dict[str, list[str]]],
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "security": security,
        "responses": {**responses, "default": {"$ref": "#/components/responses/Error"}},
    }
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _int_query(name: str, low: int, high: int, default: int) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": low, "maximum": high, "default": default},
        "description": f"A whole number {low}-{high} (ASCII digits only); anything else is a "
        "400 naming the parameter.",
    }


CREDENTIALS = _obj(
    ("username", "password"),
    username={"type": "string", "minLength": 1, "maxLength": 256},
    password={"type": "string", "minLength": 1, "maxLength": 1024},
)
USERNAME_BODY = _obj(("username",), username={"type": "string", "minLength": 1})
LABEL_BODY = _obj(label=_nullable({"type": "string", "maxLength": MAX_LABEL_LEN}))
OK_USER = _json(_obj(("ok", "username"), ok={"const": True}, username=STR))
HTML = {"description": "An HTML page", "content": {"text/html": {"schema": STR}}}


def _sign_in_paths(
    prefix: str, tag: str, login: str, logout: str, security: list[dict[str, list[str]]]
) -> dict[str, dict[str, Any]]:
    """The login and logout operations of one identity (admin or portal user)."""
    return {
        f"{prefix}/login": {
            "post": _op(login, tag, NONE, {"200": OK_USER}, body=_body(CREDENTIALS))
        },
        f"{prefix}/logout": {"post": _op(logout, tag, [{}, *security], {"200": _json(_ref("Ok"))})},
    }


def _paths() -> dict[str, dict[str, Any]]:
    usage_params = [_int_query("days", 1, MAX_DAYS, DEFAULT_DAYS)]
    return {
        # admin sign-in and management
        **_sign_in_paths(
            "/api/auth",
            "admin",
            "Sign the admin in (sets the session cookie)",
            "Sign the admin out everywhere (always 200)",
            ADMIN,
        ),
        "/api/auth/me": {
            "get": _op(
                "The signed-in admin",
                "admin",
                ADMIN,
                {
                    "200": _json(
                        _closed(
                            authenticated={"const": True}, role={"const": "admin"}, username=STR
                        )
                    )
                },
            )
        },
        "/api/admin/openai-users": {
            "get": _op(
                "The portal user table, totals and master key summary",
                "admin",
                ADMIN,
                {
                    "200": _json(
                        _closed(
                            users={"type": "array", "items": ADMIN_USER_ROW},
                            totals=_closed(
                                hourlyRemaining=NUM,
                                weeklyRemaining=NUM,
                                linked=INT,
                                keyed=INT,
                                users=INT,
                                eligible=N_INT,
                                nextResetAt=N_NUM,
                            ),
                            masterKey=_closed(
                                exists=BOOL,
                                label=N_STR,
                                hint=N_STR,
                                createdAt=N_NUM,
                                lastUsedAt=N_NUM,
                                limits=_nullable(_ref("KeyLimits")),
                                usageToday=_nullable(_ref("KeyUsage")),
                            ),
                        )
                    )
                },
            )
        },
        "/api/admin/openai-users/reveal-key": {
            "post": _op(
                "A user's live endpoint key in plain text (audited)",
                "admin",
                ADMIN,
                {"200": _json(_closed(username=STR, key=STR, label=STR, hint=STR, createdAt=NUM))},
                body=_body(USERNAME_BODY),
            )
        },
        "/api/admin/openai-users/delete": {
            "post": _op(
                "Delete a user with their sessions, keys, limits and Codex home",
                "admin",
                ADMIN,
                {"200": _json(_closed(ok={"const": True}, username=STR, deleted={"const": True}))},
                body=_body(USERNAME_BODY),
            )
        },
        **{
            f"/api/admin/openai-users/{name}": {
                "post": _op(
                    "Mint a new master key (the old one stops working); shown once",
                    "admin",
                    ADMIN,
                    {"200": _json(_ref("IssuedKey"))},
                    body=_body(LABEL_BODY, required=False),
                    description=None
                    if name == "rotate-master-key"
                    else "Alias of `rotate-master-key`.",
                )
            }
            for name in ("rotate-master-key", "rotate-owner-key", "rotate-owner-special-key")
        },
        "/api/admin/openai-users/key-limits": {
            "post": _op(
                "Replace the limits of a user's key or of the master key",
                "admin",
                ADMIN,
                {
                    "200": _json(
                        _closed(target=STR, limits=_ref("KeyLimits"), usageToday=_ref("KeyUsage"))
                    )
                },
                body=_body(KEY_LIMITS_REQUEST),
                description="400 for an unknown field, a bad value, or both/neither target; "
                "404 `user_not_found` / `key_not_found`.",
            )
        },
        "/api/admin/audit": {
            "get": _op(
                "The newest audit rows",
                "admin",
                ADMIN,
                {
                    "200": _json(
                        _closed(
                            data={
                                "type": "array",
                                "items": _closed(
                                    id=INT,
                                    ts=NUM,
                                    actor=STR,
                                    action=STR,
                                    target=N_STR,
                                    detail=N_STR,
                                    ip=N_STR,
                                ),
                            }
                        )
                    )
                },
                params=[_int_query("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)],
            )
        },
        "/api/admin/usage": {
            "get": _op(
                "Usage per UTC day, per serving account and per key",
                "admin",
                ADMIN,
                {
                    "200": _json(
                        _closed(
                            days=INT,
                            since=NUM,
                            byAccount={
                                "type": "array",
                                "items": _closed(day=STR, userId=N_INT, username=N_STR, **_SUMS),
                            },
                            byKey={
                                "type": "array",
                                "items": _closed(
                                    day=STR,
                                    keyId=N_INT,
                                    keyKind={"enum": ["user", "master", "session"]},
                                    keyHint=N_STR,
                                    keyLabel=N_STR,
                                    username=N_STR,
                                    **_SUMS,
                                ),
                            },
                            totals=_closed(**_SUMS),
                        )
                    )
                },
                params=usage_params,
            )
        },
        "/api/admin/requests": _request_log_op(
            "The request log: every request, newest first", "admin", ADMIN, admin=True
        ),
        "/api/admin/quota-history": {
            "get": _op(
                "Each account's 5-hour and weekly used-percent over time, with projections",
                "admin",
                ADMIN,
                {"200": _json(_QUOTA_HISTORY)},
                params=[
                    {
                        "name": "hours",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "default": 24},
                        "description": "1 to usageRetentionDays x 24 (ASCII digits only).",
                    },
                    {
                        "name": "account",
                        "in": "query",
                        "required": False,
                        "schema": STR,
                        "description": "An account's user id or username; 404 if none.",
                    },
                ],
            )
        },
        "/api/admin/alerts": {
            "get": _op(
                "The newest operator alerts and their webhook delivery state",
                "admin",
                ADMIN,
                {
                    "200": _json(
                        _closed(
                            webhookConfigured=BOOL,
                            quotaPercent=INT,
                            data={
                                "type": "array",
                                "items": _closed(
                                    id=INT,
                                    kind=STR,
                                    text=STR,
                                    account=N_STR,
                                    at=NUM,
                                    state={
                                        "enum": [
                                            "pending",
                                            "retrying",
                                            "delivered",
                                            "failed",
                                            "not_sent",
                                        ]
                                    },
                                    attempts=INT,
                                    lastError=N_STR,
                                    nextAttemptAt=N_NUM,
                                    deliveredAt=N_NUM,
                                ),
                            },
                        )
                    )
                },
            )
        },
        "/api/admin/usage/series": {
            "get": _op(
                "Usage per UTC hour or day, one series per account or key",
                "admin",
                ADMIN,
                {"200": _json(_USAGE_SERIES)},
                params=_USAGE_SERIES_PARAMS,
            )
        },
        "/api/openai/usage/series": {
            "get": _op(
                "The signed-in user's own usage per UTC hour or day",
                "portal",
                PORTAL,
                {"200": _json(_USAGE_SERIES)},
                params=_USAGE_SERIES_PARAMS,
            )
        },
        "/api/openai/requests": _request_log_op(
            "The user's own requests (their key's and their account's), newest first",
            "portal",
            PORTAL,
            admin=False,
        ),
        # portal accounts
        "/api/openai/auth/register": {
            "post": _op(
                "Create a portal user and sign them in",
                "portal",
                NONE,
                {"201": OK_USER},
                body=_body(
                    _obj(
                        ("username", "password"),
                        username={"type": "string", "pattern": "^\\s*[A-Za-z0-9_.-]{3,32}\\s*$"},
                        password={
                            "type": "string",
                            "minLength": MIN_PASSWORD_LEN,
                            "maxLength": MAX_PASSWORD_LEN,
                        },
                    )
                ),
            )
        },
        **_sign_in_paths(
            "/api/openai/auth",
            "portal",
            "Sign a portal user in (sets the session cookie)",
            "Sign out: every portal session of this user ends (always 200)",
            PORTAL,
        ),
        "/api/openai/auth/me": {
            "get": _op(
                "The signed-in user's account, key summary, limits and device-login state",
                "portal",
                PORTAL,
                {
                    "200": _json(
                        _closed(
                            authenticated={"const": True},
                            username=STR,
                            createdAt=NUM,
                            linked=BOOL,
                            hasKey=BOOL,
                            keyHint=N_STR,
                            keyLabel=N_STR,
                            keyCreatedAt=N_NUM,
                            keyLastUsedAt=N_NUM,
                            keyLimits=_nullable(_ref("KeyLimits")),
                            keyUsageToday=_ref("KeyUsage"),
                            poolOptIn=BOOL,
                            limits=_closed(**_LIMIT_FIELDS),
                            poolEligible=BOOL,
                            poolIneligibleReason=N_STR,
                            device=_ref("DeviceStatus"),
                        )
                    )
                },
            )
        },
        "/api/openai/keys/rotate": {
            "post": _op(
                "Mint the user's new endpoint key (the old one stops working); shown once",
                "portal",
                PORTAL,
                {"200": _json(_ref("IssuedKey"))},
                body=_body(LABEL_BODY, required=False),
            )
        },
        "/api/openai/pool/opt-in": {
            "post": _op(
                "Whether this user's account may serve master-key requests",
                "portal",
                PORTAL,
                {"200": _json(_closed(ok={"const": True}, poolOptIn=BOOL))},
                body=_body(_obj(("optIn",), optIn=BOOL)),
            )
        },
        "/api/openai/usage": {
            "get": _op(
                "The signed-in user's own usage per UTC day",
                "portal",
                PORTAL,
                {
                    "200": _json(
                        _closed(
                            days=INT,
                            since=NUM,
                            byKey={"type": "array", "items": _closed(day=STR, **_SUMS)},
                            servedByAccount={
                                "type": "array",
                                "items": _closed(day=STR, **_SUMS, poolRequests=INT),
                            },
                        )
                    )
                },
                params=usage_params,
            )
        },
        # device linking
        "/api/openai/codex/device/start": {
            "post": _op(
                "Start `codex login --device-auth` for this user",
                "device",
                PORTAL,
                {"200": _json(_ref("DeviceStatus"))},
            )
        },
        "/api/openai/codex/device/status": {
            "get": _op(
                "The user's device-login state",
                "device",
                PORTAL,
                {"200": _json(_ref("DeviceStatus"))},
            )
        },
        "/api/openai/codex/device/cancel": {
            "post": _op(
                "Cancel the user's running device login",
                "device",
                PORTAL,
                {"200": _json(_ref("DeviceStatus"))},
            )
        },
        "/api/openai/codex/unlink": {
            "post": _op(
                "Log the user's account out of Codex and remove its login",
                "device",
                PORTAL,
                {
                    "200": _json(
                        _closed(ok={"const": True}, linked={"const": False}, wasLinked=BOOL)
                    )
                },
            )
        },
        "/api/openai/codex/execute-session": {
            "post": _op(
                "The portal's quick test: one short chat turn on the caller's account",
                "portal",
                [*PORTAL, *API_KEY],
                {
                    "200": {
                        "description": "A chat completion, or its chunk stream",
                        "content": {
                            "application/json": {"schema": _ref("ChatCompletion")},
                            "text/event-stream": {"schema": SSE},
                        },
                    }
                },
                body=_body(
                    _obj(
                        ("prompt",),
                        prompt={"type": "string", "minLength": 1, "maxLength": QUICK_PROMPT_CHARS},
                        stream=BOOL,
                        model=_nullable(STR),
                        timeoutMs={"type": "integer", "minimum": 1},
                    )
                ),
                description="When an API key header is sent only the key counts.",
            )
        },
        # OpenAI-compatible
        "/api/openai/v1/chat/completions": {
            "post": _op(
                "OpenAI chat completion (streamed or not) from one Codex turn",
                "openai",
                API_KEY,
                {
                    "200": {
                        "description": "A chat completion, or `chat.completion.chunk` events",
                        "content": {
                            "application/json": {"schema": _ref("ChatCompletion")},
                            "text/event-stream": {"schema": SSE},
                        },
                    }
                },
                body=_body(_ref("ChatRequest")),
                description="503 `no_linked_accounts` / `limits_unavailable` when the master "
                "key has no usable account; 429 when the account or pool is spent.",
            )
        },
        "/api/openai/v1/responses": {
            "post": _op(
                "OpenAI Responses API over the chat path",
                "openai",
                API_KEY,
                {
                    "200": {
                        "description": "A `response` object, or `response.*` events",
                        "content": {
                            "application/json": {
                                "schema": _obj(
                                    ("id", "object", "status", "output"),
                                    object={"const": "response"},
                                    id=STR,
                                    status=STR,
                                    output={"type": "array"},
                                )
                            },
                            "text/event-stream": {"schema": SSE},
                        },
                    }
                },
                body=_body(_ref("ResponsesRequest")),
                description="Function and `custom` tools reach the model (custom tools as "
                "functions of one string, called back as `custom_tool_call` items); `web_search` "
                "is served when the `webSearch` setting is on; other hosted tools are dropped, "
                "named in the `x-codexpool-dropped-tools` header and a `warnings` entry.",
            )
        },
        "/api/openai/v1/models": {
            "get": _op(
                "The models clients may ask for",
                "openai",
                API_KEY,
                {
                    "200": _json(
                        _closed(
                            object={"const": "list"},
                            data={
                                "type": "array",
                                "items": _closed(
                                    id=STR, object={"const": "model"}, created=INT, owned_by=STR
                                ),
                            },
                        )
                    )
                },
            )
        },
        "/api/openai/v1/modes": {
            "get": _op(
                "The named reasoning modes and the Codex effort of each",
                "openai",
                API_KEY,
                {
                    "200": _json(
                        _closed(
                            object={"const": "list"},
                            data={
                                "type": "array",
                                "items": _closed(id=STR, object={"const": "mode"}, effort=STR),
                            },
                            reasoning_efforts={"type": "array", "items": STR},
                        )
                    )
                },
            )
        },
        "/api/openai/v1/codex/execute": {
            "post": _op(
                "One agentic `codex exec` run in an allowed folder (off unless executeEnabled)",
                "openai",
                API_KEY,
                {
                    "200": {
                        "description": "The run's final message, items and usage, or its events",
                        "content": {
                            "application/json": {
                                "schema": _closed(
                                    finalMessage=N_STR,
                                    items={"type": "array", "items": {"type": "object"}},
                                    usage=_nullable({"type": "object"}),
                                    threadId=N_STR,
                                    exitCode=N_INT,
                                )
                            },
                            "text/event-stream": {"schema": SSE},
                        },
                    }
                },
                body=_body(
                    _obj(
                        ("prompt", "cwd"),
                        prompt={"type": "string", "minLength": 1, "maxLength": 200_000},
                        cwd={
                            "type": "string",
                            "pattern": "^/[^\\u0000]*$",
                            "description": "An absolute folder path inside executeAllowedRoots.",
                        },
                        model=N_STR,
                        timeoutMs={"type": "number", "exclusiveMinimum": 0},
                        stream=BOOL,
                    )
                ),
                description="403 `execute_disabled` unless the server enables it.",
            )
        },
        # operations
        "/api/health": {
            "get": _op(
                "Liveness and readiness (503 with the same body when not ready); the details "
                "(version, codex, accounts) only for the metrics token or an admin session",
                "ops",
                NONE,
                {
                    "200": _json(_ref("Health")),
                    "503": _json(_ref("Health"), "Not ready (database or codex binary missing)"),
                },
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                "ops",
                [{"metricsToken": []}, *ADMIN],
                {
                    "200": {
                        "description": "Prometheus text",
                        "content": {"text/plain": {"schema": STR}},
                    }
                },
            )
        },
        "/api/openapi.json": {
            "get": _op(
                "This document",
                "ops",
                NONE,
                {"200": _json({"type": "object"})},
            )
        },
        # pages
        "/": {
            "get": _op(
                "The admin panel (302 to /login without an admin session)",
                "pages",
                NONE,
                {"200": HTML, "302": {"description": "To /login"}},
            )
        },
        "/login": {"get": _op("The admin sign-in page", "pages", NONE, {"200": HTML})},
        "/openai": {"get": _op("The portal page", "pages", NONE, {"200": HTML})},
    }


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document (a fresh copy: callers may change it)."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "codexpool",
            "version": __version__,
            "description": "OpenAI-compatible gateway over ChatGPT accounts linked through the "
            "Codex CLI, with an admin panel and a user portal. Every error is "
            '`{"error": {message, type, param, code, source}}`. Static files under '
            "`/static/` and the automatic HEAD twin of every GET are not listed.",
        },
        "paths": _paths(),
        "components": COMPONENTS,
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return copy.deepcopy(doc)


__all__ = ["openapi_document"]
