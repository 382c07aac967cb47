"""Where a request runs in a cluster: here, or forwarded to the node that owns its account.

- a user key (or a portal cookie) runs on its account's owner;
- the master key runs on this node's own accounts while one is eligible, else on another node
  that holds accounts (round-robin over them);
- a request another node forwarded runs here, never forwarded again;
- while this node cannot reach the database it takes no new work (503 database_unavailable);
  streams already running continue.

Single-node gateways have no cluster node in the app and these functions return at once.
"""

from __future__ import annotations

import itertools
import math

from aiohttp import web

from ..app_keys import CLUSTER, CLUSTER_SESSION, POOL, SETTINGS
from ..errors import ApiError
from ..users import KeyPrincipal
from . import forward
from .node import ClusterNode, PeerNode

FORWARDED = web.RequestKey("cluster_forwarded", str)
_ROUND_ROBIN = itertools.count()


def _unavailable(node: ClusterNode) -> ApiError:
    return ApiError(
        503,
        "This gateway node cannot reach its database, so it takes no new requests; retry "
        "(another node may answer) or wait until the database is back.",
        "database_unavailable",
        headers={"Retry-After": str(max(1, math.ceil(node.tick_s * 2)))},
    )


async def _checked(request: web.Request) -> ClusterNode | None:
    """Return the cluster node when this request may be forwarded; None when it runs here
    (single node, or forwarded to us already)."""
    node = request.app.get(CLUSTER)
    if node is None:
        return None
    sender = await forward.verify(request, request.app[SETTINGS].cluster_secret)
    if not node.available():
        raise _unavailable(node)
    if sender is not None:
        request[FORWARDED] = sender
        return None
    return node


async def _send(request: web.Request, node: ClusterNode, peer: PeerNode) -> web.StreamResponse:
    return await forward.forward(
        request,
        request.app[CLUSTER_SESSION],
        url=peer.url,
        secret=request.app[SETTINGS].cluster_secret,
        node_id=node.node_id,
        owner_id=peer.id,
    )


async def route_account(request: web.Request, user_id: int) -> web.StreamResponse | None:
    """Forward a request that must run on this account when another node owns it; None when
    it runs here."""
    node = await _checked(request)
    if node is None or node.owns(user_id) or not node.has_login(user_id):
        return None  # here (an unlinked account answers its usual 403 here)
    peer = node.owner_of(user_id)
    if peer is None or not peer.live:
        if await node.acquire_now(user_id):
            return None
        raise ApiError(
            503,
            "This key's ChatGPT account is moving between gateway nodes; retry shortly.",
            "account_unavailable",
            headers={"Retry-After": str(max(1, math.ceil(node.lease_s)))},
        )
    if peer.id == node.node_id:
        return None
    return await _send(request, node, peer)


async def route(request: web.Request, principal: KeyPrincipal) -> web.StreamResponse | None:
    """Forward the request when its account lives on another node; None when it runs here."""
    if principal.kind == "user":
        assert principal.user_id is not None
        return await route_account(request, principal.user_id)
    node = await _checked(request)
    if node is None:
        return None
    pool = request.app[POOL]
    await pool.candidates()
    view = pool.view()
    if view.eligible or view.unknown:
        return None  # the master key prefers this node's own accounts (unread ones are read)
    holders = {lease.node_id for lease in node.picture.leases.values()}
    peers = [p for p in node.peers() if p.id in holders]
    if not peers:
        return None  # nobody else can either: the local answer says why
    return await _send(request, node, peers[next(_ROUND_ROBIN) % len(peers)])
