"""Admin sign-in (/api/auth/*) and user management (/api/admin/*), admin session only."""

from __future__ import annotations

import json

from aiohttp import web

from .. import admin_users, answers, audit, key_limits, sessions, usage_report, users
from ..app_keys import (
    ADMIN_AUTH,
    CIPHER,
    CLUSTER,
    DEVICE_LOGINS,
    ENGINE,
    KEY_QUOTAS,
    LIMITS,
    POOL,
    SETTINGS,
    STORE,
    THROTTLE,
    USAGE,
)
from ..bodies import USER_REF_CODES, Credentials, KeyLabel, KeyLimitsChange, UserRef
from ..cluster import links
from ..errors import ApiError
from ..validate import read_body, read_optional_body, whole_number
from .common import ip_of, ok, read_credentials
from .table import ADMIN, NONE, Route, add_routes, answer, int_query

ADMIN_SCOPE = "admin"


async def login(request: web.Request) -> web.Response:
    """Sign the admin in (throttled per name and address; bcrypt off the loop)."""
    username, password = await read_credentials(request)
    ip = ip_of(request)
    throttle = request.app[THROTTLE]
    await throttle.guard(ADMIN_SCOPE, username, ip)
    store = request.app[STORE]
    if not await request.app[ADMIN_AUTH].verify(username, password):
        await throttle.record_failure(ADMIN_SCOPE, username, ip)
        await audit.record(store, "anonymous", "admin.login_failed", username[:64], None, ip)
        raise ApiError(401, "Invalid username or password.", "invalid_credentials")
    await throttle.record_success(ADMIN_SCOPE, username, ip)
    await sessions.start_admin_session(request)
    await audit.record(store, "admin", "admin.login", username, None, ip)
    return ok(username=request.app[ADMIN_AUTH].username)


async def logout(request: web.Request) -> web.Response:
    """Sign the admin out everywhere (every admin cookie issued so far stops working)."""
    try:
        await sessions.require_admin(request)
    except ApiError:
        await sessions.end_admin_session(request, everywhere=False)
        return ok()
    await sessions.end_admin_session(request)
    await audit.record(request.app[STORE], "admin", "admin.logout", None, None, ip_of(request))
    if request.app[SETTINGS].shares_state:  # the other nodes reload the fence
        await request.app[STORE].announce_change()
    return ok()


async def me(request: web.Request) -> web.Response:
    """Return the signed-in admin, or 401 when the session is missing or expired."""
    username = await sessions.require_admin(request)
    return web.json_response({"authenticated": True, "role": "admin", "username": username})


async def list_users(request: web.Request) -> web.Response:
    """Return the portal user table, totals and the master key summary."""
    await sessions.require_admin(request)
    app = request.app
    table = await admin_users.user_table(
        app[STORE],
        app[SETTINGS],
        app[POOL],
        app[KEY_QUOTAS],
        app[ENGINE].instructions.fallbacks(),
        linked_check=(lambda uid: links.is_linked(app, uid)) if CLUSTER in app else None,
    )
    if CLUSTER in app:
        table["cluster"] = app[CLUSTER].describe()
    return web.json_response(table)


async def reveal_key(request: web.Request) -> web.Response:
    """Return a user's live endpoint key in plain text (audited)."""
    await sessions.require_admin(request)
    body = await read_body(request, UserRef, codes=USER_REF_CODES)
    store = request.app[STORE]
    user = await admin_users.find_user(store, body.username)
    row = await users.live_key_row(store, user_id=user.id, kind="user")
    if row is None:
        raise ApiError(404, f"User {user.username!r} has no endpoint key.", "key_not_found")
    key = request.app[CIPHER].decrypt(row["ciphertext"])
    if key is None:
        raise ApiError(
            409,
            "This key was stored under a different openaiKeyEncryptionSecret and cannot be "
            "revealed; it still works. Rotate it to get a revealable key.",
            "key_not_revealable",
        )
    await audit.record(store, "admin", "key.reveal", user.username, None, ip_of(request))
    return web.json_response(
        {
            "username": user.username,
            "key": key,
            "label": row["label"],
            "hint": row["hint"],
            "createdAt": row["created_at"],
        }
    )


async def delete_user(request: web.Request) -> web.Response:
    """Delete a user with their sessions, keys, limits, device flow, app-server and home."""
    await sessions.require_admin(request)
    body = await read_body(request, UserRef, codes=USER_REF_CODES)
    store = request.app[STORE]
    user = await admin_users.find_user(store, body.username)
    await admin_users.delete_user(store, request.app[SETTINGS], request.app[DEVICE_LOGINS], user)
    request.app[POOL].invalidate()
    request.app[LIMITS].forget(user.id)
    request.app[KEY_QUOTAS].forget(("user", user.id))
    request.app[ENGINE].instructions.forget(str(user.id))
    await audit.record(store, "admin", "user.delete", user.username, None, ip_of(request))
    return ok(username=user.username, deleted=True)


async def rotate_master_key(request: web.Request) -> web.Response:
    """Mint a new master key, revoke the old one at once, and return the new key once."""
    await sessions.require_admin(request)
    label = users.validate_label((await read_optional_body(request, KeyLabel)).label) or "master"
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    key = await users.rotate_key(
        store,
        request.app[CIPHER],
        kind="master",
        prefix=settings.openai_master_key_prefix,
        label=label,
    )
    row = await users.live_key_row(store, user_id=None, kind="master")
    assert row is not None
    await audit.record(store, "admin", "master_key.rotate", label, None, ip_of(request))
    return web.json_response(
        {"key": key, "label": row["label"], "hint": row["hint"], "createdAt": row["created_at"]}
    )


async def set_key_limits(request: web.Request) -> web.Response:
    """Replace the limits of a user's key (`username`) or of the master key (`master: true`)."""
    await sessions.require_admin(request)
    body = await read_body(request, KeyLimitsChange)  # refuses unknown fields
    store = request.app[STORE]
    if body.master is True and body.username is None:
        owner: key_limits.Owner = ("master", None)
        target = "master"
    elif not body.master:
        user = await admin_users.find_user(store, body.username)
        owner, target = ("user", user.id), user.username
    else:
        raise ApiError(
            400, "Send either `username` or `master: true`.", "invalid_request", param="master"
        )
    limits = key_limits.parse_limits(body)
    if not await users.set_key_limits(store, owner, limits):
        raise ApiError(404, f"{target!r} has no live key to limit.", "key_not_found")
    use = await request.app[KEY_QUOTAS].usage_of(owner)
    await audit.record(
        store, "admin", "key.limits", target, json.dumps(limits.as_json()), ip_of(request)
    )
    return web.json_response(
        {"target": target, "limits": limits.as_json(), "usageToday": use.as_json()}
    )


async def audit_log(request: web.Request) -> web.Response:
    """Return the newest audit rows (`?limit=N`, 1-1000, default 100)."""
    await sessions.require_admin(request)
    raw = request.query.get("limit", str(audit.DEFAULT_LIMIT))
    limit = whole_number(raw, "limit", 1, audit.MAX_LIMIT)
    return web.json_response({"data": await audit.recent(request.app[STORE], limit)})


async def usage(request: web.Request) -> web.Response:
    """Return usage per UTC day per account and per key (`?days=N`, 1-366, default 7)."""
    await sessions.require_admin(request)
    days = usage_report.parse_days(request)
    await request.app[USAGE].settle()
    return web.json_response(await usage_report.admin_usage(request.app[STORE], days))


ROUTES = (
    Route(
        "POST",
        "/api/auth/login",
        login,
        NONE,
        "Sign the admin in (sets the session cookie)",
        "admin",
        answer(answers.OkUser),
        body=Credentials,
    ),
    Route(
        "POST",
        "/api/auth/logout",
        logout,
        ("", *ADMIN),
        "Sign the admin out everywhere (always 200)",
        "admin",
        answer(answers.Ok),
    ),
    Route(
        "GET", "/api/auth/me", me, ADMIN, "The signed-in admin", "admin", answer(answers.AdminMe)
    ),
    Route(
        "GET",
        "/api/admin/openai-users",
        list_users,
        ADMIN,
        "The portal user table, totals and master key summary",
        "admin",
        answer(answers.UserTable),
    ),
    Route(
        "POST",
        "/api/admin/openai-users/reveal-key",
        reveal_key,
        ADMIN,
        "A user's live endpoint key in plain text (audited)",
        "admin",
        answer(answers.RevealedKey),
        body=UserRef,
    ),
    Route(
        "POST",
        "/api/admin/openai-users/delete",
        delete_user,
        ADMIN,
        "Delete a user with their sessions, keys, limits and Codex home",
        "admin",
        answer(answers.UserDeleted),
        body=UserRef,
    ),
    *(
        Route(
            "POST",
            f"/api/admin/openai-users/{name}",
            rotate_master_key,
            ADMIN,
            "Mint a new master key (the old one stops working); shown once",
            "admin",
            answer(answers.IssuedKey),
            body=KeyLabel,
            body_required=False,
            description=None if name == "rotate-master-key" else "Alias of `rotate-master-key`.",
        )
        for name in ("rotate-master-key", "rotate-owner-key", "rotate-owner-special-key")
    ),
    Route(
        "POST",
        "/api/admin/openai-users/key-limits",
        set_key_limits,
        ADMIN,
        "Replace the limits of a user's key or of the master key",
        "admin",
        answer(answers.KeyLimitsSet),
        body=KeyLimitsChange,
        description="400 for an unknown field, a bad value, or both/neither target; "
        "404 `user_not_found` / `key_not_found`.",
    ),
    Route(
        "GET",
        "/api/admin/audit",
        audit_log,
        ADMIN,
        "The newest audit rows",
        "admin",
        answer(answers.AuditLog),
        params=(int_query("limit", 1, audit.MAX_LIMIT, audit.DEFAULT_LIMIT),),
    ),
    Route(
        "GET",
        "/api/admin/usage",
        usage,
        ADMIN,
        "Usage per UTC day, per serving account and per key",
        "admin",
        answer(answers.AdminUsage),
        params=(int_query("days", 1, usage_report.MAX_DAYS, usage_report.DEFAULT_DAYS),),
    ),
)


def setup(app: web.Application) -> None:
    """Register the admin routes (after sessions.setup)."""
    add_routes(app, ROUTES)
