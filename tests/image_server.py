"""A loopback https image server for the image download tests, with its own self-signed
certificate (valid for 127.0.0.1 and localhost), running in a thread so that sync tests (the
openai SDK against a live server) and async tests can both use it."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import struct
import threading
import zlib
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_png(width: int = 3, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    """Return a valid RGB PNG of one colour (a real image codex and the tests can recognise)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


PNG = make_png()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 and localhost; return (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "codexpool test image server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "image-server.crt", folder / "image-server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class ImageServer:
    """Serves test images over https on 127.0.0.1 (a free port) from a background thread.

    Routes: `/pixel.png` (a PNG), `/big.png` (a PNG header and then `big_bytes` more bytes,
    streamed without a length), `/declared-big.png` (a declared length above the limit),
    `/page.html` (text/html), `/fake.png` (says image/png, holds text), `/chain/{n}` (n
    redirects, then /pixel.png), `/to?location=...` (one redirect there), `/slow.png` (answers
    after 30 s), `/missing.png` (404). `hits` counts requests per path.
    """

    def __init__(self, folder: Path, big_bytes: int = 2 * 1024 * 1024) -> None:
        self.cert, self.key = make_certificate(folder)
        self.big_bytes = big_bytes
        self.hits: dict[str, int] = {}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="image-server", daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """Return the https URL of `path` on this server."""
        return f"https://{host}:{self.port}{path}"

    def client_context(self) -> ssl.SSLContext:
        """Return a client TLS context that trusts this server's certificate."""
        return ssl.create_default_context(cafile=str(self.cert))

    def start(self) -> ImageServer:
        """Start serving; return once the port is bound."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("image server did not start")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop = self._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._serve())
        loop.run_forever()
        loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/pixel.png", self._pixel)
        app.router.add_get("/big.png", self._big)
        app.router.add_get("/declared-big.png", self._declared_big)
        app.router.add_get("/page.html", self._page)
        app.router.add_get("/fake.png", self._fake)
        app.router.add_get("/chain/{n}", self._chain)
        app.router.add_get("/to", self._to)
        app.router.add_get("/slow.png", self._slow)
        app.router.add_get("/missing.png", self._missing)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._ready.set()

    def _hit(self, request: web.Request) -> None:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1

    async def _pixel(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(body=PNG, content_type="image/png")

    async def _big(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(PNG[:16])
        block = b"\0" * 65536
        sent = 0
        try:
            while sent < self.big_bytes:
                await resp.write(block)
                sent += len(block)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client stopped reading, as it should
        return resp

    async def _declared_big(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(body=PNG + b"\0" * self.big_bytes, content_type="image/png")

    async def _page(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(text="<h1>not an image</h1>", content_type="text/html")

    async def _fake(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(body=b"hello, I am text", content_type="image/png")

    async def _chain(self, request: web.Request) -> web.Response:
        self._hit(request)
        n = int(request.match_info["n"])
        location = "/pixel.png" if n <= 1 else f"/chain/{n - 1}"
        raise web.HTTPFound(location)

    async def _to(self, request: web.Request) -> web.Response:
        self._hit(request)
        # Written by hand: aiohttp's HTTPFound refuses some of the Locations tests send.
        return web.Response(status=302, headers={"Location": request.query["location"]})

    async def _slow(self, request: web.Request) -> web.Response:
        self._hit(request)
        await asyncio.sleep(30)
        return web.Response(body=PNG, content_type="image/png")

    async def _missing(self, request: web.Request) -> web.Response:
        self._hit(request)
        raise web.HTTPNotFound()
