"""Codex device linking for the signed-in portal user (/api/openai/codex/device/*, unlink)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .. import answers, audit, sessions, stale_users
from ..app_keys import CLUSTER, CODEX_BIN, DEVICE_LOGINS, ENGINE, POOL, REFUSALS, SETTINGS, STORE
from ..cluster import links
from ..device_login import DeviceLogins
from ..shared_device_login import SharedDeviceLogins
from .common import ip_of
from .table import PORTAL, Route, add_routes, answer


async def device_start(request: web.Request) -> web.Response:
    """Start `codex login --device-auth` for this user; answers once link + code are known."""
    user = await sessions.require_portal_user(request)
    status = await request.app[DEVICE_LOGINS].start(user.id, user.username)
    return web.json_response(status)


async def device_status(request: web.Request) -> web.Response:
    """Return the user's device-login state, link, code, recent log lines and linked flag."""
    user = await sessions.require_portal_user(request)
    return web.json_response(await request.app[DEVICE_LOGINS].current(user.id))


async def device_cancel(request: web.Request) -> web.Response:
    """Cancel the user's running device login (its codex process group ends)."""
    user = await sessions.require_portal_user(request)
    return web.json_response(await request.app[DEVICE_LOGINS].cancel(user.id))


async def unlink(request: web.Request) -> web.Response:
    """Log the user's account out of Codex, stop its app-server and remove auth.json."""
    user = await sessions.require_portal_user(request)
    was_linked = await request.app[DEVICE_LOGINS].unlink(user.id)
    was_linked = await links.unlink(request.app, user.id) or was_linked  # cluster: the DB copy
    request.app[POOL].invalidate()
    request.app[ENGINE].instructions.forget(str(user.id))
    await audit.record(
        request.app[STORE],
        f"user:{user.username}",
        "device.unlink",
        user.username,
        None if was_linked else "was not linked",
        ip_of(request),
    )
    return web.json_response({"ok": True, "linked": False, "wasLinked": was_linked})


async def _device_logins_ctx(app: web.Application) -> AsyncIterator[None]:
    """Own every device flow and the hourly sweep of registrations that never linked; on
    shutdown cancel them all (their process groups end)."""
    engine, settings = app.get(ENGINE), app[SETTINGS]
    factory = SharedDeviceLogins if settings.shares_state else DeviceLogins
    logins = factory(
        settings,
        app[STORE],
        app[CODEX_BIN],
        stop_account=engine.stop_account if engine is not None else None,
        refusals=app[REFUSALS],
    )
    if CLUSTER in app:  # the database's copy of a login is the one that counts
        logins.linked_check = lambda uid: links.is_linked(app, uid)
        logins.on_linked = lambda uid: links.publish_local_login(app, uid)
    app[DEVICE_LOGINS] = logins
    tasks = [
        asyncio.create_task(
            stale_users.run_sweeper(app[STORE], settings, logins), name="unlinked-users"
        )
    ]
    if isinstance(logins, SharedDeviceLogins):  # status and cancel reach every node
        logins.attach(settings.node_name)
        tasks.append(asyncio.create_task(logins.run_publisher(), name="device-publisher"))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await logins.close()


ROUTES = (
    Route(
        "POST",
        "/api/openai/codex/device/start",
        device_start,
        PORTAL,
        "Start `codex login --device-auth` for this user",
        "device",
        answer(answers.DeviceStatus),
    ),
    Route(
        "GET",
        "/api/openai/codex/device/status",
        device_status,
        PORTAL,
        "The user's device-login state",
        "device",
        answer(answers.DeviceStatus),
    ),
    Route(
        "POST",
        "/api/openai/codex/device/cancel",
        device_cancel,
        PORTAL,
        "Cancel the user's running device login",
        "device",
        answer(answers.DeviceStatus),
    ),
    Route(
        "POST",
        "/api/openai/codex/unlink",
        unlink,
        PORTAL,
        "Log the user's account out of Codex and remove its login",
        "device",
        answer(answers.Unlinked),
    ),
)


def setup(app: web.Application) -> None:
    """Register the device-linking routes and the flows' lifetime (after the engine's)."""
    app.cleanup_ctx.append(_device_logins_ctx)
    add_routes(app, ROUTES)
