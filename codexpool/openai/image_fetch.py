"""Fetch a chat request's `https` images in the gateway and hand them to Codex as data URLs.

Codex 0.169 refuses remote image URLs, so the gateway downloads them itself, before the turn
takes an account slot. A URL is a request to make *this machine* open a connection, so every
fetch is confined to public addresses:

- https only; the host's addresses are resolved by `VettingResolver`, which refuses the whole
  name when any address is private, loopback, link-local, reserved, multicast or a cloud
  metadata address, and aiohttp connects to exactly the addresses it returned (no second
  lookup between the check and the connection, so DNS rebinding cannot swap them). aiohttp
  skips the resolver for IP literals, so those are checked before each request;
- redirects are followed by hand, at most `MAX_REDIRECTS`, each hop checked the same way;
- the declared content type and the body's first bytes must both be PNG, JPEG, GIF or WebP;
- the body is read as a stream and dropped at `maxImageBytes`; all images of one request
  together stay under `maxImageBytesPerRequest`; each image has `imageFetchTimeoutMs` for all
  of its hops;
- no cookies, no proxy from the environment, no credentials of ours.

Every failure is a 400 naming the part (`messages[1].content[0].image_url`). The test-only
setting `testingImageFetchLoopback` lets the tests' image server on 127.0.0.1 through (and
nothing else private); the tests trust its certificate through the standard `SSL_CERT_FILE`.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..codex.engine import TurnRequest
from ..config import Settings
from ..errors import ApiError

_LOGGER = logging.getLogger(__name__)

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_REDIRECTS = 3
MAX_CONNECTIONS = 32  # image downloads in flight in the whole gateway; more wait their turn
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_USER_AGENT = "codexpool-image-fetch"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForbiddenAddress(OSError):
    """A host resolved to an address the gateway must not connect to."""


def address_refusal(ip: IpAddress, allow_loopback: bool = False) -> str | None:
    """Return why the gateway must not fetch from `ip`, or None when it is a public address.

    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by the
    address they reach. `allow_loopback` (tests only) lets loopback through, nothing else.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: IpAddress | None = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is not None:
            return address_refusal(embedded, allow_loopback)
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_link_local:
        return "a link-local or cloud metadata address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "a reserved address"
    if ip.is_private or not ip.is_global:
        return "a private address"
    return None


class VettingResolver(AbstractResolver):
    """Resolve names with the system resolver and refuse any name with a forbidden address.

    The connector connects only to the addresses returned here, so the address checked is the
    address used.
    """

    def __init__(self, allow_loopback: bool = False) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_loopback = allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve `host`, raising ForbiddenAddress when any of its addresses is not public."""
        results = await self._inner.resolve(host, port, family)
        for result in results:
            ip = ipaddress.ip_address(result["host"].split("%", 1)[0])
            reason = address_refusal(ip, self._allow_loopback)
            if reason is not None:
                raise ForbiddenAddress(f"{host} resolves to {reason}")
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


@dataclass(frozen=True)
class FetchLimits:
    """The bounds every image download of one gateway obeys."""

    max_bytes: int
    max_request_bytes: int
    timeout_s: float
    allow_loopback: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        """Read the image settings."""
        return cls(
            max_bytes=settings.max_image_bytes,
            max_request_bytes=settings.max_image_bytes_per_request,
            timeout_s=settings.image_fetch_timeout_ms / 1000,
            allow_loopback=settings.testing_image_fetch_loopback,
        )


def _bad(message: str, param: str, code: str) -> ApiError:
    return ApiError(400, message, code, param=param)


def sniff_image_type(head: bytes) -> str | None:
    """Return the image type the first bytes of a body show, or None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


class _Budget:
    """The bytes all images of one request may still use (shared by concurrent fetches)."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self.left = limits.max_request_bytes

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _bad(
                f"the images of one request may hold at most "
                f"{_mib(self.limits.max_request_bytes)} in all",
                "messages",
                "images_too_large",
            )


def _image_parts(item: dict[str, Any]) -> list[dict[str, Any]]:
    content = item.get("content")
    if not isinstance(content, list):
        return []
    return [p for p in content if isinstance(p, dict) and p.get("type") == "input_image"]


def _history_images(history: Sequence[dict[str, Any]]) -> list[str]:
    """Return the image URLs of the history items' `input_image` parts, in order."""
    return [
        part["image_url"]
        for item in history
        for part in _image_parts(item)
        if isinstance(part.get("image_url"), str)
    ]


def _with_images(item: dict[str, Any], fetched: dict[str, str]) -> dict[str, Any]:
    """Return `item` with its downloaded images as data URLs (a copy, or `item` unchanged)."""
    if not any(part.get("image_url") in fetched for part in _image_parts(item)):
        return item
    content = [
        {**part, "image_url": fetched[part["image_url"]]}
        if isinstance(part, dict)
        and part.get("type") == "input_image"
        and part.get("image_url") in fetched
        else part
        for part in item["content"]
    ]
    return {**item, "content": content}


class ImageFetcher:
    """Downloads images for chat turns over one vetted, cookie-less client session."""

    def __init__(self, limits: FetchLimits, ssl_context: ssl.SSLContext | None = None) -> None:
        self.limits = limits
        # Built at start-up: the system CA store, or the file $SSL_CERT_FILE names (tests).
        context = ssl_context or ssl.create_default_context()
        connector = aiohttp.TCPConnector(
            resolver=VettingResolver(limits.allow_loopback),
            use_dns_cache=False,  # every connection resolves (and is vetted) afresh
            ssl=context,
            limit=MAX_CONNECTIONS,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # no proxy or .netrc from the environment
            headers={"User-Agent": _USER_AGENT, "Accept": ", ".join(IMAGE_TYPES)},
        )

    async def close(self) -> None:
        """Close the client session and its connections."""
        await self._session.close()

    async def inline(
        self,
        turn: TurnRequest,
        refs: Sequence[tuple[str, str]],
        fallback_param: str = "messages",
    ) -> TurnRequest:
        """Return `turn` with every https image, in its input and in its history's
        `input_image` parts, replaced by a data URL of its bytes.

        `refs` gives each image part of the request as (URL, param), for errors; an image the
        request itself did not send (a stored conversation's) is named `fallback_param`.
        Inline data URLs are held to the same limits. Each distinct URL is downloaded once;
        the downloads run concurrently; the first failure cancels the others and is raised
        as a 400. The turn's items are copied where they change, never modified.
        """
        urls = list(dict.fromkeys([*turn.images, *_history_images(turn.history)]))
        if not urls:
            return turn
        params: dict[str, str] = {}
        for url, param in refs:
            params.setdefault(url, param)
        budget = _Budget(self.limits)
        for url in urls:
            if url.startswith("data:"):
                self._check_data_url(url, params.get(url, fallback_param), budget)
        remote = [url for url in urls if url.startswith("https://")]
        if not remote:
            return turn
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {
                    url: group.create_task(self.fetch(url, params.get(url, fallback_param), budget))
                    for url in remote
                }
        except* ApiError as failures:
            raise failures.exceptions[0] from None
        fetched = {url: task.result() for url, task in tasks.items()}
        return replace(
            turn,
            images=tuple(fetched.get(url, url) for url in turn.images),
            history=tuple(_with_images(item, fetched) for item in turn.history),
        )

    def _check_data_url(self, url: str, param: str, budget: _Budget) -> None:
        head, _, data = url.partition(",")
        size = len(data) * 3 // 4 - data.count("=", -2)
        if size > self.limits.max_bytes:
            raise _bad(
                f"images may be at most {_mib(self.limits.max_bytes)}", param, "image_too_large"
            )
        budget.take(size)

    async def fetch(self, url: str, param: str, budget: _Budget | None = None) -> str:
        """Download one https image and return it as a base64 data URL (or raise a 400)."""
        budget = budget or _Budget(self.limits)
        try:
            start = URL(url)
        except ValueError:
            raise _bad("the image URL is not a valid URL", param, "invalid_image_url") from None
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                mime, body = await self._follow(start, param, budget)
        except TimeoutError:
            raise _bad(
                f"the image did not arrive within {self.limits.timeout_s:g} s",
                param,
                "image_fetch_timeout",
            ) from None
        return f"data:{mime};base64,{base64.b64encode(body).decode('ascii')}"

    async def _follow(self, url: URL, param: str, budget: _Budget) -> tuple[str, bytes]:
        for _hop in range(MAX_REDIRECTS + 1):
            self._check_url(url, param)
            try:
                async with self._session.get(url, allow_redirects=False) as resp:
                    if resp.status in _REDIRECTS and "Location" in resp.headers:
                        try:
                            url = resp.url.join(URL(resp.headers["Location"]))
                        except ValueError:
                            raise self._failed(url, param, "an invalid redirect") from None
                        continue
                    if resp.status != 200:
                        raise self._failed(url, param, f"HTTP status {resp.status}")
                    return await self._read(resp, param, budget)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, ForbiddenAddress):
                    raise self._forbidden(url, param, str(exc.os_error)) from None
                raise self._failed(url, param, "no connection") from None
            except (aiohttp.ClientError, ValueError) as exc:
                # TLS failures, malformed answers, cut connections
                _LOGGER.debug("Image fetch from %r failed: %r", url.raw_host, exc)
                raise self._failed(url, param, type(exc).__name__) from None
        raise self._failed(url, param, f"more than {MAX_REDIRECTS} redirects")

    def _check_url(self, url: URL, param: str) -> None:
        """Refuse a URL that is not https or names a forbidden IP literal (the resolver checks
        names; aiohttp does not consult it for literals)."""
        try:
            host, _port = url.host, url.port  # both parse lazily and may raise
        except ValueError:  # a bad port, or a name IDNA cannot decode
            raise _bad("the image URL is not a valid URL", param, "invalid_image_url") from None
        if url.scheme != "https" or not host:
            raise _bad("image URLs must be https:// (redirects too)", param, "unsupported_image")
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return  # a name: VettingResolver checks what it resolves to
        reason = address_refusal(ip, self.limits.allow_loopback)
        if reason is not None:
            raise self._forbidden(url, param, f"{host} is {reason}")

    async def _read(
        self, resp: aiohttp.ClientResponse, param: str, budget: _Budget
    ) -> tuple[str, bytes]:
        if resp.content_type not in IMAGE_TYPES:
            raise _bad(
                f"the image URL answered {resp.content_type!r}, not a PNG, JPEG, GIF or WebP image",
                param,
                "unsupported_image",
            )
        limit = self.limits.max_bytes
        too_large = _bad(f"images may be at most {_mib(limit)}", param, "image_too_large")
        if resp.content_length is not None and resp.content_length > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large
            budget.take(len(chunk))
            chunks.append(chunk)
        body = b"".join(chunks)
        mime = sniff_image_type(body[:16])
        if mime is None:
            raise _bad(
                "the image URL's body is not a PNG, JPEG, GIF or WebP image",
                param,
                "unsupported_image",
            )
        return mime, body

    def _forbidden(self, url: URL, param: str, reason: str) -> ApiError:
        _LOGGER.info("Image fetch refused: %r", reason)
        return _bad(
            f"image URL refused: {reason}; only public addresses are fetched",
            param,
            "image_url_forbidden",
        )

    def _failed(self, url: URL, param: str, reason: str) -> ApiError:
        _LOGGER.info("Image fetch from %r failed: %s", url.raw_host, reason)
        return _bad(
            f"the image could not be fetched from {url.raw_host}: {reason}",
            param,
            "image_fetch_failed",
        )
