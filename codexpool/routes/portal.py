"""Portal self-service (/api/openai/auth/*, keys, pool opt-in), portal session only."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .. import admin_users, answers, audit, sessions, usage_report, users
from ..app_keys import CIPHER, DEVICE_LOGINS, KEY_QUOTAS, POOL, SETTINGS, STORE, THROTTLE, USAGE
from ..bodies import REGISTRATION_CODES, Credentials, KeyLabel, PoolOptIn, Registration
from ..cluster import links
from ..errors import ApiError
from ..security import hash_password, verify_password
from ..validate import read_body, read_optional_body
from .common import ip_of, ok, read_credentials
from .table import NONE, PORTAL, Reply, Route, add_routes, answer, int_query

PORTAL_SCOPE = "portal"


async def register(request: web.Request) -> web.Response:
    """Create a portal user and sign them in."""
    body = await read_body(request, Registration, codes=REGISTRATION_CODES)
    username = users.normalize_username(body.username)
    password = body.password
    ip = ip_of(request)
    await request.app[THROTTLE].take_registration(ip)
    store = request.app[STORE]
    hashed = await asyncio.to_thread(hash_password, password)
    user = await users.create_user(store, username, hashed)
    await sessions.start_portal_session(request, user)
    await audit.record(store, f"user:{username}", "user.register", username, None, ip)
    return web.json_response({"ok": True, "username": user.username}, status=201)


async def login(request: web.Request) -> web.Response:
    """Sign a portal user in (throttled per name and address; bcrypt off the loop)."""
    raw_name, password = await read_credentials(request)
    username = raw_name.casefold()
    ip = ip_of(request)
    throttle = request.app[THROTTLE]
    await throttle.guard(PORTAL_SCOPE, username, ip)
    store = request.app[STORE]
    found = await users.get_password_hash(store, username)
    hashed = found[1] if found and not found[0].disabled else None
    # An unknown name still costs one bcrypt check, so timing does not reveal who exists.
    if not await asyncio.to_thread(verify_password, password, hashed) or found is None:
        await throttle.record_failure(PORTAL_SCOPE, username, ip)
        await audit.record(store, "anonymous", "user.login_failed", username[:64], None, ip)
        raise ApiError(401, "Invalid username or password.", "invalid_credentials")
    user = found[0]
    await throttle.record_success(PORTAL_SCOPE, username, ip)
    await sessions.start_portal_session(request, user)
    await audit.record(store, f"user:{user.username}", "user.login", user.username, None, ip)
    return ok(username=user.username)


async def logout(request: web.Request) -> web.Response:
    """Sign out: every portal session of this user ends (the session epoch moves)."""
    user = await sessions.portal_user_or_none(request)
    await sessions.end_portal_session(request)
    if user is not None:
        store = request.app[STORE]
        await users.bump_session_epoch(store, user.id)
        await audit.record(
            store, f"user:{user.username}", "user.logout", user.username, None, ip_of(request)
        )
    return ok()


async def me(request: web.Request) -> web.Response:
    """Return the signed-in user's account, key summary and device-login state."""
    user = await sessions.require_portal_user(request)
    app = request.app
    key = await users.live_key_row(app[STORE], user_id=user.id, kind="user")
    device = await app[DEVICE_LOGINS].current(user.id)
    pool = app[POOL]
    await pool.candidates()
    reason = admin_users.pool_reason(pool.view(), user.id, key is not None)
    use = await app[KEY_QUOTAS].usage_of(("user", user.id))
    return web.json_response(
        {
            "authenticated": True,
            "username": user.username,
            "createdAt": user.created_at,
            "linked": links.is_linked(app, user.id),
            **users.key_fields(users.key_summary(key, use)),
            "poolOptIn": user.pool_opt_in,
            "limits": admin_users.limit_fields(pool.limits_of(user.id), time.time()),
            "poolEligible": reason is None,
            "poolIneligibleReason": reason,
            "device": device,
        }
    )


async def rotate_key(request: web.Request) -> web.Response:
    """Mint the user's new endpoint key, revoke the old one at once, return the key once."""
    user = await sessions.require_portal_user(request)
    label = users.validate_label((await read_optional_body(request, KeyLabel)).label)
    app = request.app
    store = app[STORE]
    key = await users.rotate_key(
        store,
        app[CIPHER],
        kind="user",
        prefix=app[SETTINGS].openai_api_key_prefix,
        user_id=user.id,
        label=label,
    )
    app[POOL].invalidate()  # a first key makes the account a pool candidate
    row = await users.live_key_row(store, user_id=user.id, kind="user")
    assert row is not None
    await audit.record(
        store, f"user:{user.username}", "key.rotate", user.username, None, ip_of(request)
    )
    return web.json_response(
        {"key": key, "label": row["label"], "hint": row["hint"], "createdAt": row["created_at"]}
    )


async def pool_opt_in(request: web.Request) -> web.Response:
    """Let the user say whether their account may serve master-key (pool) requests."""
    user = await sessions.require_portal_user(request)
    opt_in = (await read_body(request, PoolOptIn)).optIn
    store = request.app[STORE]
    await users.set_pool_opt_in(store, user.id, opt_in)
    request.app[POOL].invalidate()
    await audit.record(
        store,
        f"user:{user.username}",
        "pool.opt_in" if opt_in else "pool.opt_out",
        user.username,
        None,
        ip_of(request),
    )
    return ok(poolOptIn=opt_in)


async def usage(request: web.Request) -> web.Response:
    """Return the user's own usage per UTC day (`?days=N`, 1-366, default 7)."""
    user = await sessions.require_portal_user(request)
    days = usage_report.parse_days(request)
    await request.app[USAGE].settle()
    return web.json_response(await usage_report.user_usage(request.app[STORE], user.id, days))


ROUTES = (
    Route(
        "POST",
        "/api/openai/auth/register",
        register,
        NONE,
        "Create a portal user and sign them in",
        "portal",
        {"201": Reply(answers.OkUser)},
        body=Registration,
    ),
    Route(
        "POST",
        "/api/openai/auth/login",
        login,
        NONE,
        "Sign a portal user in (sets the session cookie)",
        "portal",
        answer(answers.OkUser),
        body=Credentials,
    ),
    Route(
        "POST",
        "/api/openai/auth/logout",
        logout,
        ("", *PORTAL),
        "Sign out: every portal session of this user ends (always 200)",
        "portal",
        answer(answers.Ok),
    ),
    Route(
        "GET",
        "/api/openai/auth/me",
        me,
        PORTAL,
        "The signed-in user's account, key summary, limits and device-login state",
        "portal",
        answer(answers.PortalMe),
    ),
    Route(
        "POST",
        "/api/openai/keys/rotate",
        rotate_key,
        PORTAL,
        "Mint the user's new endpoint key (the old one stops working); shown once",
        "portal",
        answer(answers.IssuedKey),
        body=KeyLabel,
        body_required=False,
    ),
    Route(
        "POST",
        "/api/openai/pool/opt-in",
        pool_opt_in,
        PORTAL,
        "Whether this user's account may serve master-key requests",
        "portal",
        answer(answers.OptedIn),
        body=PoolOptIn,
    ),
    Route(
        "GET",
        "/api/openai/usage",
        usage,
        PORTAL,
        "The signed-in user's own usage per UTC day",
        "portal",
        answer(answers.UserUsage),
        params=(int_query("days", 1, usage_report.MAX_DAYS, usage_report.DEFAULT_DAYS),),
    ),
)


def setup(app: web.Application) -> None:
    """Register the portal account routes (after sessions.setup)."""
    add_routes(app, ROUTES)
