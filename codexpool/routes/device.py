"""Codex device linking for the signed-in portal user (/api/openai/codex/device/*, unlink)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .. import audit, sessions, stale_users
from ..app_keys import CODEX_BIN, DEVICE_LOGINS, ENGINE, POOL, REFUSALS, SETTINGS, STORE
from ..device_login import DeviceLogins
from ..nodes import node_id
from ..shared_device_login import SharedDeviceLogins
from .common import ip_of


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
    app[DEVICE_LOGINS] = logins
    tasks = [
        asyncio.create_task(
            stale_users.run_sweeper(app[STORE], settings, logins), name="unlinked-users"
        )
    ]
    if isinstance(logins, SharedDeviceLogins):  # status and cancel reach every node
        logins.attach(node_id(settings))
        tasks.append(asyncio.create_task(logins.run_publisher(), name="device-publisher"))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await logins.close()


def setup(app: web.Application) -> None:
    """Register the device-linking routes and the flows' lifetime (after the engine's)."""
    app.cleanup_ctx.append(_device_logins_ctx)
    app.router.add_post("/api/openai/codex/device/start", device_start)
    app.router.add_get("/api/openai/codex/device/status", device_status)
    app.router.add_post("/api/openai/codex/device/cancel", device_cancel)
    app.router.add_post("/api/openai/codex/unlink", unlink)
