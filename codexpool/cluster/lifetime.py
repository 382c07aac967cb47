"""The cluster node's lifetime inside the app (a cleanup context, after the engine's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..app_keys import CIPHER, CLUSTER, CLUSTER_SESSION, ENGINE, POOL, SETTINGS, STORE
from . import forward
from .node import ClusterNode


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """Join the cluster: take a first share of the accounts before serving; on the way out
    stop their processes, hand them back and leave the registry (before the engine closes)."""
    engine, pool = app[ENGINE], app[POOL]
    node = ClusterNode(
        app[SETTINGS],
        app[STORE],
        app[CIPHER],
        stop_account=engine.stop_account,
        busy=engine.active_turns,
        on_change=pool.invalidate,
    )
    session = forward.client_session()
    app[CLUSTER_SESSION] = session
    await node.start()
    app[CLUSTER] = node
    yield
    await node.close()
    await session.close()
