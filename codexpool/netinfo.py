"""Who is calling and over what: client address and scheme, proxy headers only when trusted.

`X-Forwarded-*` headers are client-controlled unless a reverse proxy we run overwrites them, so
they are honoured only with the `trustedProxy` setting; otherwise a client could dodge the
login throttle or downgrade cookie flags by sending them.
"""

from __future__ import annotations

from aiohttp import web


def client_ip(request: web.Request, trusted_proxy: bool) -> str:
    """Return the caller's address: the peer, or the proxy's last X-Forwarded-For hop."""
    if trusted_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        # The last entry is the one our own proxy appended; earlier ones are client-supplied.
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return request.remote or "unknown"


def is_https(request: web.Request, trusted_proxy: bool) -> bool:
    """Tell whether the client reached us over TLS (directly, or via the trusted proxy)."""
    if trusted_proxy:
        proto = request.headers.get("X-Forwarded-Proto", "")
        if proto:
            return proto.split(",")[0].strip().lower() == "https"
    return request.secure


def public_host(request: web.Request, trusted_proxy: bool) -> str:
    """Return the host[:port] the client addressed (X-Forwarded-Host only when trusted)."""
    if trusted_proxy:
        forwarded = request.headers.get("X-Forwarded-Host", "")
        if forwarded:
            return forwarded.split(",")[0].strip().lower()
    return (request.host or "").lower()
