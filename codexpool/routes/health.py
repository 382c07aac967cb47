"""GET /api/health: liveness plus readiness for load balancers, scripts and the panel.

Anyone may ask whether the gateway is up; only the operator learns how it is built and how
many accounts it holds (the codex path and version tell an attacker what to aim at).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import __version__, answers
from ..app_keys import CLUSTER, CODEX_BIN, ENGINE, POOL, STORE
from ..errors import ApiError
from ..sessions import require_admin
from .common import metrics_token_sent
from .table import NONE, Reply, Route, add_routes


async def is_operator(request: web.Request) -> bool:
    """Tell whether the caller sent the metrics token (Bearer) or holds an admin session."""
    sent = metrics_token_sent(request)
    if sent is not None:
        return sent
    try:
        await require_admin(request)
    except ApiError:
        return False
    return True


async def health(request: web.Request) -> web.Response:
    """Report whether the gateway can serve: database, codex binary, linked and eligible accounts.

    `ready` needs the database and the codex binary; having no linked account is a normal
    state of a fresh install, reported but not a failure. Anonymous callers get `status` and
    `ready` only; the details need the metrics token or an admin session.
    """
    app = request.app
    db_ok = await app[STORE].ping()
    cluster = app.get(CLUSTER)
    if cluster is not None:  # a node that cannot renew its leases takes no new work
        db_ok = db_ok and cluster.available()
    codex_bin = app[CODEX_BIN]
    ready = db_ok and bool(codex_bin)
    status = 200 if ready else 503
    body: dict[str, Any] = {"status": "ok" if ready else "degraded", "ready": ready}
    if not await is_operator(request):
        return web.json_response(body, status=status)
    linked = await app[POOL].linked_accounts() if db_ok else []
    eligible = await app[POOL].eligible_count() if db_ok else 0
    body |= {
        "version": __version__,
        "database": "ok" if db_ok else "unreachable",
        "codex": {"found": bool(codex_bin), "path": codex_bin or None},
        "accounts": {"linked": len(linked), "eligible": eligible},
        "codexProcesses": app[ENGINE].live_processes(),
    }
    if cluster is not None:  # the nodes, which accounts each owns, lease ages
        body["cluster"] = cluster.describe()
    return web.json_response(body, status=status)


ROUTES = (
    Route(
        "GET",
        "/api/health",
        health,
        NONE,
        "Liveness and readiness (503 with the same body when not ready); the details "
        "(version, codex, accounts) only for the metrics token or an admin session",
        "ops",
        {
            "200": Reply(answers.Health),
            "503": Reply(
                answers.Health, description="Not ready (database or codex binary missing)"
            ),
        },
    ),
)


def setup(app: web.Application) -> None:
    """Register the health route."""
    add_routes(app, ROUTES)
