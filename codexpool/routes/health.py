"""GET /api/health: liveness plus readiness for load balancers, scripts and the panel."""

from __future__ import annotations

from aiohttp import web

from .. import __version__
from ..keys import CODEX_BIN, ENGINE, POOL, STORE


async def health(request: web.Request) -> web.Response:
    """Report whether the gateway can serve: database, codex binary, linked and eligible accounts.

    `ready` needs the database and the codex binary; having no linked account is a normal
    state of a fresh install, reported but not a failure.
    """
    app = request.app
    db_ok = await app[STORE].ping()
    codex_bin = app[CODEX_BIN]
    linked = await app[POOL].linked_accounts() if db_ok else []
    eligible = await app[POOL].eligible_count() if db_ok else 0
    ready = db_ok and bool(codex_bin)
    body = {
        "status": "ok" if ready else "degraded",
        "ready": ready,
        "version": __version__,
        "database": "ok" if db_ok else "unreachable",
        "codex": {"found": bool(codex_bin), "path": codex_bin or None},
        "accounts": {"linked": len(linked), "eligible": eligible},
        "codexProcesses": app[ENGINE].live_processes(),
    }
    return web.json_response(body, status=200 if ready else 503)


def setup(app: web.Application) -> None:
    """Register the health route."""
    app.router.add_get("/api/health", health)
