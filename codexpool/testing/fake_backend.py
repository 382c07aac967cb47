"""A fake ChatGPT backend on loopback: what the real `codex` binary talks to in tests and demos.

It serves the Responses SSE stream with `x-codex-*` rate-limit headers, `/wham/usage`, the side
calls the CLI makes, the device-auth endpoints and `/oauth/token`. Behaviour is scripted per
account (the `chatgpt-account-id` header): replies, usage-limit 429s, 500s, 401s, hangs, slow
first bytes, malformed SSE and function calls.

It runs in a background thread with its own event loop because tests drive the gateway with the
*synchronous* openai SDK, which would block a loop shared with the fake. Control is available as
thread-safe methods and as HTTP endpoints under `/_fake/` (for a fake run as its own process:
`python -m codexpool.testing.fake_backend --port 18555`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_MODEL = "gpt-5.5"
DEFAULT_REPLY = "Hello from the fake backend."
CODEX_PERSONA = "You are Codex"  # how Codex's own base instructions begin
# The real backend's answer to instructions it does not accept (seen from codex CLI users).
INSTRUCTIONS_REFUSAL = {"detail": "Instructions are not valid"}
CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
NODE_HEADER = "x-test-node"  # which gateway node's codex sent a request (cluster tests)
REFRESH_PREFIX = "rt_fake_"  # refresh tokens name their account: rt_fake_<account>_<hex>


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def fake_jwt(claims: dict[str, Any]) -> str:
    """Return an unsigned JWT (`alg: none`); codex parses but does not verify its id token."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.sig"


def _claims(account_id: str, email: str, plan: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "email": email,
        "iat": now,
        "exp": now + 30 * 86_400,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": account_id,
            "chatgpt_plan_type": plan,
            "chatgpt_user_id": f"user-{account_id}",
            "user_id": f"user-{account_id}",
        },
        "https://api.openai.com/profile": {"email": email, "email_verified": True},
    }


def _tokens(account_id: str, email: str, plan: str) -> dict[str, str]:
    claims = _claims(account_id, email, plan)
    return {
        "id_token": fake_jwt(claims),
        "access_token": fake_jwt({**claims, "scp": ["openid"]}),
        "refresh_token": f"{REFRESH_PREFIX}{account_id}_{secrets.token_hex(8)}",
    }


def make_auth_json(account_id: str, email: str, plan: str = "plus") -> dict[str, Any]:
    """Return an auth.json that the real codex accepts as a logged-in ChatGPT account."""
    tokens = _tokens(account_id, email, plan)
    return {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {**tokens, "account_id": account_id},
        "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def codex_overrides(url: str, model: str = DEFAULT_MODEL) -> list[str]:
    """Return the `-c key=value` overrides that point codex at this fake with ChatGPT auth."""
    return [
        f'model="{model}"',
        'model_provider="fakechat"',
        f'chatgpt_base_url="{url}/backend-api/"',
        'model_providers.fakechat.name="Fake ChatGPT backend"',
        f'model_providers.fakechat.base_url="{url}/backend-api/codex"',
        'model_providers.fakechat.wire_api="responses"',
        "model_providers.fakechat.requires_openai_auth=true",
        "model_providers.fakechat.request_max_retries=0",
        "model_providers.fakechat.stream_max_retries=0",
    ]


def codex_env(url: str) -> dict[str, str]:
    """Return the environment that sends codex's login and token refresh to this fake."""
    return {
        "CODEX_APP_SERVER_LOGIN_ISSUER": url,
        "CODEX_REFRESH_TOKEN_URL_OVERRIDE": f"{url}/oauth/token",
    }


@dataclass
class AccountState:
    """Usage and scripted behaviour of one fake account."""

    primary_used: float = 10.0
    secondary_used: float = 5.0
    primary_resets_at: int = field(default_factory=lambda: int(time.time()) + 3600)
    secondary_resets_at: int = field(default_factory=lambda: int(time.time()) + 5 * 86_400)
    script: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    responses: int = 0
    usage_fail: int = 0  # how many next /wham/usage reads answer 500


@dataclass
class DeviceCode:
    """One pending device authorization."""

    device_auth_id: str
    user_code: str
    approved: bool = False
    account_id: str = "acct_device"
    email: str = "device@example.com"


class FakeState:
    """Everything the fake knows; guarded by one lock (control calls come from other threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accounts: dict[str, AccountState] = {}
        self.devices: dict[str, DeviceCode] = {}
        self.log: list[dict[str, Any]] = []
        # Refresh tokens spent by a refresh (the real backend refuses a reused one) and the
        # (old, new) pairs of every rotation, in order.
        self.spent_refresh_tokens: set[str] = set()
        self.rotations: list[tuple[str, str]] = []
        self.default_delay_ms = 0
        self.default_chunks = 4
        self.device_account: tuple[str, str] = ("acct_device", "device@example.com")
        self.closed_streams = 0  # /responses streams the client went away from
        # When set, /responses refuses (400) a request that does not carry Codex's own base
        # instructions, as the real backend once did for custom instructions.
        self.require_codex_instructions = False

    def account(self, account_id: str | None) -> AccountState:
        key = account_id or "_anonymous"
        if key not in self.accounts:
            self.accounts[key] = AccountState()
        return self.accounts[key]


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def _rate_headers(acct: AccountState) -> dict[str, str]:
    return {
        "x-codex-primary-used-percent": str(acct.primary_used),
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(acct.primary_resets_at),
        "x-codex-secondary-used-percent": str(acct.secondary_used),
        "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-at": str(acct.secondary_resets_at),
    }


def has_codex_instructions(body: Any) -> bool:
    """Tell whether a /responses body carries Codex's own base instructions (in `instructions`
    or, as codex 0.169 sends them, in a developer message of `input`)."""
    if not isinstance(body, dict):
        return False
    if str(body.get("instructions") or "").startswith(CODEX_PERSONA):
        return True
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("role") in ("developer", "system"):
            for part in item.get("content") or []:
                if isinstance(part, dict) and str(part.get("text", "")).startswith(CODEX_PERSONA):
                    return True
    return False


def _split(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text) or 1))
    size = -(-len(text) // n) if text else 1
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeBackendApp:
    """The aiohttp handlers over a FakeState."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.base_url = ""

    def build(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/backend-api/codex/responses", self.responses)
        r.add_get("/backend-api/codex/models", self.models)
        r.add_get("/backend-api/wham/usage", self.usage)
        r.add_get("/backend-api/wham/accounts/check", self.accounts_check)
        r.add_post("/api/accounts/deviceauth/usercode", self.device_usercode)
        r.add_post("/api/accounts/deviceauth/token", self.device_token)
        r.add_post("/oauth/token", self.oauth_token)
        r.add_get("/codex/device", self.device_page)
        r.add_post("/_fake/usage", self.ctl_usage)
        r.add_post("/_fake/script", self.ctl_script)
        r.add_post("/_fake/config", self.ctl_config)
        r.add_post("/_fake/device/approve", self.ctl_approve)
        r.add_get("/_fake/device", self.ctl_devices)
        r.add_get("/_fake/requests", self.ctl_requests)
        r.add_post("/_fake/reset", self.ctl_reset)
        r.add_route("*", "/{tail:.*}", self.fallback)
        return app

    def _record(
        self, request: web.Request, body: Any = None, size: int | None = None
    ) -> str | None:
        """Log a request; `size` is its body's length in bytes as sent (benchmarks)."""
        account_id = request.headers.get("chatgpt-account-id")
        with self.state.lock:
            self.state.log.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "account_id": account_id,
                    "body": body,
                    "bytes": size,
                    "ts": time.time(),
                    "node": request.headers.get(NODE_HEADER),
                }
            )
            if len(self.state.log) > 10_000:
                del self.state.log[:5_000]
        return account_id

    async def responses(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        account_id = self._record(request, body, len(raw))
        with self.state.lock:
            acct = self.state.account(account_id)
            acct.responses += 1
            headers = _rate_headers(acct)
            # A refused request leaves the account's script for the next one.
            refuse = self.state.require_codex_instructions and not has_codex_instructions(body)
            step: dict[str, Any] = (
                acct.script.popleft() if acct.script and not refuse else {"kind": "reply"}
            )
            delay = self.state.default_delay_ms
            chunks = self.state.default_chunks
        if refuse:
            return web.json_response(INSTRUCTIONS_REFUSAL, status=400, headers=headers)
        kind = step.get("kind", "reply")
        if kind == "usage_limit":
            resets_at = int(step.get("resets_at") or time.time() + 3600)
            with self.state.lock:
                acct.primary_used = 100.0
                acct.primary_resets_at = resets_at
            headers = {**_rate_headers(acct), "x-codex-primary-used-percent": "100.0"}
            return web.json_response(
                {
                    "error": {
                        "type": "usage_limit_reached",
                        "message": "The usage limit has been reached",
                        "plan_type": "plus",
                        "resets_at": resets_at,
                    }
                },
                status=429,
                headers=headers,
            )
        if kind == "status":
            status = int(step.get("status", 500))
            return web.json_response(
                step.get("body")
                or {"error": {"type": "server_error", "message": f"fake status {status}"}},
                status=status,
            )
        if kind == "unauthorized":
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": "unauthorized"}},
                status=401,
            )
        if kind == "hang":
            await asyncio.sleep(3600)
        if step.get("delay_first_ms") or kind == "slow_first_byte":
            await asyncio.sleep(float(step.get("delay_first_ms") or step.get("ms", 1000)) / 1000)
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", **headers}
        )
        try:
            await resp.prepare(request)
            if kind == "malformed":
                await resp.write(b"event: response.created\ndata: {not json\n\n")
                await resp.write(b"data: \x00garbage\n\n")
                return resp
            rid = "resp_" + secrets.token_hex(6)
            await resp.write(_sse({"type": "response.created", "response": {"id": rid}}))
            if kind == "function_call":
                if step.get("reasoning"):  # the model reasoned, then called
                    await self._reasoning(resp, list(step["reasoning"]))
                # One call, or several parallel calls in one response (`calls`).
                for call in step.get("calls") or [step]:
                    item = {
                        "type": "function_call",
                        "id": "fc_" + secrets.token_hex(4),
                        "call_id": call.get("call_id", "call_1"),
                        "name": call["name"],
                        "arguments": call.get("arguments", "{}"),
                    }
                    await resp.write(_sse({"type": "response.output_item.done", "item": item}))
                text = ""
            else:
                text = str(step.get("text", DEFAULT_REPLY))
                between = float(step.get("delay_between_ms", delay)) / 1000
                if step.get("reasoning"):  # a reasoning item with one summary part first
                    await self._reasoning(resp, list(step["reasoning"]))
                msg_id = "msg_" + secrets.token_hex(4)
                await resp.write(
                    _sse(
                        {
                            "type": "response.output_item.added",
                            "item": {
                                "type": "message",
                                "role": "assistant",
                                "id": msg_id,
                                "content": [],
                            },
                        }
                    )
                )
                for index, piece in enumerate(_split(text, int(step.get("chunks", chunks)))):
                    if index == step.get("hang_after"):  # stall mid-answer, connection open
                        await asyncio.sleep(3600)
                    if index == step.get("malformed_after"):  # garbage mid-answer, then close
                        await resp.write(b"data: {broken json\n\n")
                        return resp
                    if between:
                        await asyncio.sleep(between)
                    await resp.write(
                        _sse(
                            {
                                "type": "response.output_text.delta",
                                "item_id": msg_id,
                                "delta": piece,
                            }
                        )
                    )
                await resp.write(
                    _sse(
                        {
                            "type": "response.output_item.done",
                            "item": {
                                "type": "message",
                                "role": "assistant",
                                "id": msg_id,
                                "content": [{"type": "output_text", "text": text}],
                            },
                        }
                    )
                )
            out_tokens = max(1, len(text.split()))
            await resp.write(
                _sse(
                    {
                        "type": "response.completed",
                        "response": {
                            "id": rid,
                            "usage": {
                                "input_tokens": 11,
                                "input_tokens_details": {"cached_tokens": 3},
                                "output_tokens": out_tokens,
                                "output_tokens_details": {"reasoning_tokens": 0},
                                "total_tokens": 11 + out_tokens,
                            },
                        },
                    }
                )
            )
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            with self.state.lock:
                self.state.closed_streams += 1
            raise
        return resp

    async def _reasoning(self, resp: web.StreamResponse, pieces: list[Any]) -> None:
        """Stream a reasoning item as the Responses API does: added, a summary part, its
        text deltas, done (codex announces the item to its clients from these)."""
        rs_id = "rs_" + secrets.token_hex(4)
        # A list of strings is one summary part; a list of lists, one part per list.
        parts = [p if isinstance(p, list) else [p] for p in pieces]
        if all(isinstance(p, str) for p in pieces):
            parts = [list(pieces)]
        events: list[dict[str, Any]] = [
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"type": "reasoning", "id": rs_id, "summary": []},
            }
        ]
        summary = []
        for index, part in enumerate(parts):
            ref = {"item_id": rs_id, "output_index": 0, "summary_index": index}
            text = "".join(part)
            summary.append({"type": "summary_text", "text": text})
            events += [
                {
                    "type": "response.reasoning_summary_part.added",
                    **ref,
                    "part": {"type": "summary_text", "text": ""},
                },
                *(
                    {"type": "response.reasoning_summary_text.delta", **ref, "delta": d}
                    for d in part
                ),
                {"type": "response.reasoning_summary_text.done", **ref, "text": text},
                {"type": "response.reasoning_summary_part.done", **ref, "part": summary[-1]},
            ]
        events.append(
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {"type": "reasoning", "id": rs_id, "summary": summary},
            }
        )
        for event in events:
            await resp.write(_sse(event))

    async def models(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.json_response({"models": []})

    async def usage(self, request: web.Request) -> web.Response:
        account_id = self._record(request)
        with self.state.lock:
            acct = self.state.account(account_id)
            if acct.usage_fail > 0:
                acct.usage_fail -= 1
                return web.json_response({"error": "fake usage failure"}, status=500)
            now = int(time.time())
            body = {
                "plan_type": "plus",
                "rate_limit": {
                    "allowed": acct.primary_used < 100,
                    "limit_reached": acct.primary_used >= 100 or acct.secondary_used >= 100,
                    "primary_window": {
                        "used_percent": int(acct.primary_used),
                        "limit_window_seconds": 18000,
                        "reset_after_seconds": max(0, acct.primary_resets_at - now),
                        "reset_at": acct.primary_resets_at,
                    },
                    "secondary_window": {
                        "used_percent": int(acct.secondary_used),
                        "limit_window_seconds": 604800,
                        "reset_after_seconds": max(0, acct.secondary_resets_at - now),
                        "reset_at": acct.secondary_resets_at,
                    },
                },
                "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
            }
        return web.json_response(body)

    async def accounts_check(self, request: web.Request) -> web.Response:
        account_id = self._record(request) or "acct_fake"
        return web.json_response(
            {
                "accounts": {
                    account_id: {
                        "account": {"account_id": account_id, "structure": "personal"},
                        "features": [],
                    }
                },
                "account_ordering": [account_id],
            }
        )

    async def device_usercode(self, request: web.Request) -> web.Response:
        self._record(request)
        code = DeviceCode(
            device_auth_id="dev_" + secrets.token_hex(8),
            user_code=f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}",
        )
        with self.state.lock:
            code.account_id, code.email = self.state.device_account
            self.state.devices[code.user_code] = code
        return web.json_response(
            {"device_auth_id": code.device_auth_id, "user_code": code.user_code, "interval": "1"}
        )

    async def device_token(self, request: web.Request) -> web.Response:
        self._record(request)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "bad json"}, status=400)
        with self.state.lock:
            code = self.state.devices.get(str(body.get("user_code")))
            if code is None or code.device_auth_id != body.get("device_auth_id"):
                return web.json_response({"error": "unknown device code"}, status=404)
            if not code.approved:
                return web.json_response({"error": "authorization_pending"}, status=403)
        return web.json_response(
            {
                "authorization_code": "authcode:" + code.user_code,
                "code_challenge": "challenge",
                "code_verifier": "verifier",
            }
        )

    async def oauth_token(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            return await self.refresh(request)
        form = await request.post()
        self._record(
            request, {k: ("***" if "code" in k or "token" in k else v) for k, v in form.items()}
        )
        account_id, email = "acct_device", "device@example.com"
        code = str(form.get("code", ""))
        with self.state.lock:
            if code.startswith("authcode:") and code[9:] in self.state.devices:
                dev = self.state.devices[code[9:]]
                account_id, email = dev.account_id, dev.email
        return web.json_response(_tokens(account_id, email, "plus"))

    async def refresh(self, request: web.Request) -> web.Response:
        """Rotate a refresh token as the real backend does: a new pair each time, and a spent
        refresh token is refused (a second holder of an old copy is locked out)."""
        body = await request.json()
        old = str(body.get("refresh_token") or "")
        account_id = old[len(REFRESH_PREFIX) :].rpartition("_")[0] or "acct_unknown"
        with self.state.lock:
            reused = old in self.state.spent_refresh_tokens
            tokens = _tokens(account_id, f"{account_id}@example.com", "plus")
            if not reused:
                self.state.spent_refresh_tokens.add(old)
                self.state.rotations.append((old, tokens["refresh_token"]))
        self._record(request, {"grant_type": body.get("grant_type"), "reused": reused})
        if reused:
            return web.json_response(
                {"error": {"code": "refresh_token_reused", "message": "already used"}},
                status=401,
            )
        return web.json_response(tokens)

    async def device_page(self, request: web.Request) -> web.Response:
        return web.Response(text="<h1>Fake device login</h1>", content_type="text/html")

    async def fallback(self, request: web.Request) -> web.Response:
        """Answer the CLI's side calls (plugins, analytics, settings...) harmlessly."""
        self._record(request)
        if request.method == "GET":
            return web.json_response({})
        return web.json_response({"ok": True})

    # --- control over HTTP ----------------------------------------------------------------
    async def ctl_usage(self, request: web.Request) -> web.Response:
        b = await request.json()
        set_usage(self.state, **b)
        return web.json_response({"ok": True})

    async def ctl_script(self, request: web.Request) -> web.Response:
        b = await request.json()
        script(self.state, b.get("account_id"), *b.get("steps", []))
        return web.json_response({"ok": True})

    async def ctl_config(self, request: web.Request) -> web.Response:
        b = await request.json()
        with self.state.lock:
            self.state.default_delay_ms = int(b.get("delay_ms", self.state.default_delay_ms))
            self.state.default_chunks = int(b.get("chunks", self.state.default_chunks))
            if "require_codex_instructions" in b:
                self.state.require_codex_instructions = bool(b["require_codex_instructions"])
        return web.json_response({"ok": True})

    async def ctl_approve(self, request: web.Request) -> web.Response:
        b = await request.json()
        ok = approve_device(self.state, b.get("user_code"), b.get("account_id"), b.get("email"))
        return web.json_response({"ok": ok}, status=200 if ok else 404)

    async def ctl_devices(self, request: web.Request) -> web.Response:
        with self.state.lock:
            codes = [c.user_code for c in self.state.devices.values() if not c.approved]
        return web.json_response({"pending": codes})

    async def ctl_requests(self, request: web.Request) -> web.Response:
        with self.state.lock:
            return web.json_response({"requests": list(self.state.log)})

    async def ctl_reset(self, request: web.Request) -> web.Response:
        reset(self.state)
        return web.json_response({"ok": True})


def set_usage(
    state: FakeState,
    account_id: str | None = None,
    primary_used: float | None = None,
    secondary_used: float | None = None,
    primary_resets_at: int | None = None,
    secondary_resets_at: int | None = None,
    usage_fail: int | None = None,
) -> None:
    """Set what an account's limits read and rate-limit headers report."""
    with state.lock:
        acct = state.account(account_id)
        if primary_used is not None:
            acct.primary_used = float(primary_used)
        if secondary_used is not None:
            acct.secondary_used = float(secondary_used)
        if primary_resets_at is not None:
            acct.primary_resets_at = int(primary_resets_at)
        if secondary_resets_at is not None:
            acct.secondary_resets_at = int(secondary_resets_at)
        if usage_fail is not None:
            acct.usage_fail = int(usage_fail)


def script(state: FakeState, account_id: str | None, *steps: dict[str, Any]) -> None:
    """Queue behaviours for an account's next /responses calls (one step per call)."""
    with state.lock:
        state.account(account_id).script.extend(dict(s) for s in steps)


def approve_device(
    state: FakeState,
    user_code: str | None = None,
    account_id: str | None = None,
    email: str | None = None,
) -> bool:
    """Approve a pending device code (the newest one when none is named)."""
    with state.lock:
        pending = [c for c in state.devices.values() if not c.approved]
        if user_code:
            pending = [c for c in pending if c.user_code == user_code]
        if not pending:
            return False
        code = pending[-1]
        code.approved = True
        if account_id:
            code.account_id = account_id
        if email:
            code.email = email
        return True


def reset(state: FakeState) -> None:
    """Forget every account, device code and logged request."""
    with state.lock:
        state.accounts.clear()
        state.devices.clear()
        state.log.clear()
        state.spent_refresh_tokens.clear()
        state.rotations.clear()
        state.default_delay_ms = 0
        state.default_chunks = 4
        state.closed_streams = 0
        state.require_codex_instructions = False


class FakeBackend:
    """The fake in a background thread; every method is safe to call from any thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.state = FakeState()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:PORT."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeBackend:
        """Start serving; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run, name="fake-backend", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"fake backend failed to start: {self._error}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # report start-up failures to start()
            self._error = exc
            self._ready.set()
            return
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
        loop.close()

    async def _serve(self) -> None:
        handlers = FakeBackendApp(self.state)
        self._runner = web.AppRunner(handlers.build(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._ready.set()

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FakeBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting ------------------------------------------------------------------------
    def set_usage(self, account_id: str | None = None, **kwargs: Any) -> None:
        """Set an account's used percentages, reset times, or failing usage reads."""
        set_usage(self.state, account_id, **kwargs)

    def script(self, account_id: str | None, *steps: dict[str, Any]) -> None:
        """Queue behaviours for the account's next /responses calls."""
        script(self.state, account_id, *steps)

    def clear_script(self, account_id: str | None) -> None:
        """Drop the account's queued behaviours that no call has used yet."""
        with self.state.lock:
            self.state.account(account_id).script.clear()

    def set_default_delay(self, delay_ms: int, chunks: int | None = None) -> None:
        """Delay between text chunks for every unscripted reply (benchmarks use 0)."""
        with self.state.lock:
            self.state.default_delay_ms = delay_ms
            if chunks is not None:
                self.state.default_chunks = chunks

    def require_codex_instructions(self, required: bool = True) -> None:
        """Refuse (400 "Instructions are not valid") every /responses request that lacks
        Codex's own base instructions, until called with False or reset."""
        with self.state.lock:
            self.state.require_codex_instructions = required

    def approve_device(
        self, user_code: str | None = None, account_id: str | None = None, email: str | None = None
    ) -> bool:
        """Approve a pending device login so codex's next poll succeeds."""
        return approve_device(self.state, user_code, account_id, email)

    def set_device_account(self, account_id: str, email: str) -> None:
        """Choose which account the next device logins receive."""
        with self.state.lock:
            self.state.device_account = (account_id, email)

    def requests(self, path_suffix: str = "") -> list[dict[str, Any]]:
        """Return logged requests (optionally only those whose path ends with the suffix)."""
        with self.state.lock:
            return [r for r in self.state.log if r["path"].endswith(path_suffix)]

    def rotations(self) -> list[tuple[str, str]]:
        """Return every (spent, issued) refresh-token pair, in order."""
        with self.state.lock:
            return list(self.state.rotations)

    def responses_count(self, account_id: str) -> int:
        """Return how many /responses calls an account made."""
        with self.state.lock:
            return self.state.account(account_id).responses

    def closed_streams(self) -> int:
        """Return how many reply streams a client abandoned."""
        with self.state.lock:
            return self.state.closed_streams

    def clear(self) -> None:
        """Forget all state."""
        reset(self.state)

    # convenience steps
    @staticmethod
    def reply(text: str = DEFAULT_REPLY, chunks: int = 4, **kw: Any) -> dict[str, Any]:
        """Step: stream this text in `chunks` deltas."""
        return {"kind": "reply", "text": text, "chunks": chunks, **kw}

    @staticmethod
    def usage_limit(resets_at: int) -> dict[str, Any]:
        """Step: HTTP 429 usage_limit_reached resetting at `resets_at`."""
        return {"kind": "usage_limit", "resets_at": resets_at}

    @staticmethod
    def status(code: int = 500, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Step: answer with this HTTP status (and this JSON body instead of a server_error)."""
        return {"kind": "status", "status": code, "body": body}

    @staticmethod
    def hang() -> dict[str, Any]:
        """Step: accept the request and never answer."""
        return {"kind": "hang"}


def main() -> None:
    """Run the fake as its own process until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="fake ChatGPT backend for codexpool (loopback)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18555)
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()
    fb = FakeBackend(args.host, args.port).start()
    fb.set_default_delay(args.delay_ms)
    print(fb.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fb.stop()


if __name__ == "__main__":
    main()
