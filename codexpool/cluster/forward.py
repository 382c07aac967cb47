"""Forwarding a request to the node that owns its account, signed with the cluster secret.

The forwarded request is the client's own (method, path, query, headers, body) plus two
headers: the sending node's id and an HMAC-SHA256 over a timestamp, the method, the path and
the body's digest under `clusterSecret`. The owner checks the signature, serves the request
as if the client had sent it there (it never forwards a forwarded request again), and the
answer streams back unchanged chunk by chunk: status, headers, JSON errors and SSE alike.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import aiohttp
from aiohttp import web

from ..app_keys import REQUEST_ID
from ..errors import ApiError
from ..request_id import REQUEST_ID_HEADER

_LOGGER = logging.getLogger(__name__)

NODE_HEADER = "X-Codexpool-Node"
SIGNATURE_HEADER = "X-Codexpool-Signature"
MAX_SKEW_S = 30.0  # a signature older or newer than this is refused (replays, wrong clocks)
# Connection-level headers are the hop's own; the length is recomputed for the new hop.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
SKIP_RESPONSE = HOP_HEADERS | {"date", "server", REQUEST_ID_HEADER.lower()}


def sign(secret: str, ts: str, method: str, path_qs: str, body: bytes) -> str:
    """Return the hex HMAC of one forwarded request."""
    message = "\n".join((ts, method.upper(), path_qs, hashlib.sha256(body).hexdigest()))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


async def verify(request: web.Request, secret: str) -> str | None:
    """Return the sending node's id when this request was forwarded by a node of the cluster,
    None when it came from a client; raise 401 for a forged or stale signature."""
    node = request.headers.get(NODE_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    if node is None and signature is None:
        return None
    ts, _, mac = (signature or "").partition(":")
    try:
        fresh = abs(time.time() - float(ts)) <= MAX_SKEW_S
    except ValueError:
        fresh = False
    body = await request.read()
    if (
        not node
        or not fresh
        or not hmac.compare_digest(mac, sign(secret, ts, request.method, request.path_qs, body))
    ):
        raise ApiError(
            401,
            "The request claims to come from a cluster node but its signature is not valid "
            "(clusterSecret differs between nodes, or their clocks are more than 30 s apart).",
            "invalid_cluster_signature",
        )
    return node


def client_session() -> aiohttp.ClientSession:
    """Return the session forwarded requests go through (kept-alive connections per node).

    Bodies pass through as they are (no decompression) and no total timeout applies: the
    owner's own deadlines end a request that runs too long.
    """
    return aiohttp.ClientSession(
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5),
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
    )


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    *,
    url: str,
    secret: str,
    node_id: str,
    owner_id: str,
) -> web.StreamResponse:
    """Send the request to `url` (the owner) and stream its answer back unchanged."""
    body = await request.read()
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_HEADERS]
    headers = [(k, v) for k, v in headers if k not in (NODE_HEADER, SIGNATURE_HEADER)]
    rid = request.get(REQUEST_ID)
    if rid is not None:  # both nodes log the request under one id
        headers = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER.lower()]
        headers.append((REQUEST_ID_HEADER, rid))
    ts = f"{time.time():.3f}"
    headers.append((NODE_HEADER, node_id))
    headers.append(
        (SIGNATURE_HEADER, f"{ts}:{sign(secret, ts, request.method, request.path_qs, body)}")
    )
    try:
        upstream = await session.request(
            request.method, url + request.path_qs, data=body, headers=headers
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        _LOGGER.warning("Forwarding to node %s failed: %s", owner_id, exc)
        raise ApiError(
            503,
            f"The node that serves this account ({owner_id}) cannot be reached; its accounts "
            "move to another node within the lease time, retry shortly.",
            "node_unavailable",
            headers={"Retry-After": "5"},
        ) from exc
    try:
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in upstream.headers.items():
            if key.lower() not in SKIP_RESPONSE:
                resp.headers.add(key, value)
        if upstream.content_length is not None and "Content-Encoding" not in upstream.headers:
            resp.content_length = upstream.content_length
        await resp.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
        except (aiohttp.ClientError, OSError) as exc:
            # The owner died mid-answer: the client sees the stream end early, as with any
            # broken connection (the answer cannot be resumed elsewhere).
            _LOGGER.warning("Node %s went away mid-answer: %s", owner_id, exc)
            if request.transport is not None:
                request.transport.close()
            return resp
        await resp.write_eof()
        return resp
    finally:
        upstream.release()
