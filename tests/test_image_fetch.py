"""Images by URL: the gateway downloads https images itself, only from public addresses,
within size, type, redirect and time limits, and hands them to Codex as data URLs.

The downloads go over real TLS to a loopback image server (tests/image_server.py); loopback
is reachable only through the test-only allowance, which the refusal tests leave off.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codexpool.codex.engine import TurnRequest
from codexpool.errors import ApiError
from codexpool.openai.image_fetch import (
    FetchLimits,
    ImageFetcher,
    address_refusal,
    sniff_image_type,
)

from .image_server import PNG, ImageServer

MIB = 1024 * 1024
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageServer]:
    server = ImageServer(tmp_path_factory.mktemp("images"), big_bytes=2 * MIB).start()
    yield server
    server.stop()


def _limits(**overrides: Any) -> FetchLimits:
    values: dict[str, Any] = {
        "max_bytes": MIB,
        "max_request_bytes": 4 * MIB,
        "timeout_s": 5.0,
        "allow_loopback": True,
    }
    values.update(overrides)
    return FetchLimits(**values)


async def _fetch(server: ImageServer, url: str, **overrides: Any) -> str:
    fetcher = ImageFetcher(_limits(**overrides), server.client_context())
    try:
        return await fetcher.fetch(url, "messages[1].content[0].image_url")
    finally:
        await fetcher.close()


async def _refused(server: ImageServer, url: str, **overrides: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        await _fetch(server, url, **overrides)
    err = info.value
    assert err.status == 400 and err.param == "messages[1].content[0].image_url"
    assert err.type == "invalid_request_error" and err.source == "gateway"
    return err


# --- the address check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "10.255.255.255",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "100.64.0.1",  # carrier-grade NAT
        "100.100.100.200",  # Alibaba metadata
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fd00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fe80::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "ff02::1",
    ],
)
def test_private_loopback_link_local_and_metadata_addresses_are_refused(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert address_refusal(ip) is not None
    if not ip.is_loopback and address not in ("::ffff:127.0.0.1",):
        # The test-only allowance opens loopback and nothing else.
        assert address_refusal(ip, allow_loopback=True) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "93.184.216.34"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_loopback_passes_only_with_the_test_allowance() -> None:
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        ip = ipaddress.ip_address(address)
        assert address_refusal(ip) == "a loopback address"
        assert address_refusal(ip, allow_loopback=True) is None


def test_sniff_image_type() -> None:
    assert sniff_image_type(PNG[:16]) == "image/png"
    assert sniff_image_type(b"\xff\xd8\xff\xe0\0\x10JFIF") == "image/jpeg"
    assert sniff_image_type(b"GIF89a\x01\0") == "image/gif"
    assert sniff_image_type(b"RIFF\x10\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff_image_type(b"<html>") is None
    assert sniff_image_type(b"") is None


# --- downloads over loopback TLS -----------------------------------------------------------


async def test_png_becomes_a_data_url(image_server: ImageServer) -> None:
    assert await _fetch(image_server, image_server.url("/pixel.png")) == PNG_URL


async def test_oversized_bodies_are_cut_at_the_limit(image_server: ImageServer) -> None:
    err = await _refused(image_server, image_server.url("/big.png"))  # streamed, no length
    assert err.code == "image_too_large" and "1 MiB" in err.message
    err = await _refused(image_server, image_server.url("/declared-big.png"))
    assert err.code == "image_too_large"
    # Under a larger limit the same streamed body is read whole.
    assert (await _fetch(image_server, image_server.url("/big.png"), max_bytes=3 * MIB)).startswith(
        "data:image/png;base64,"
    )


async def test_wrong_content_type_or_body_is_refused(image_server: ImageServer) -> None:
    err = await _refused(image_server, image_server.url("/page.html"))
    assert err.code == "unsupported_image" and "text/html" in err.message
    err = await _refused(image_server, image_server.url("/fake.png"))  # says PNG, holds text
    assert err.code == "unsupported_image"


async def test_redirects_are_followed_up_to_three(image_server: ImageServer) -> None:
    assert await _fetch(image_server, image_server.url("/chain/3")) == PNG_URL
    before = image_server.hits.get("/pixel.png", 0)
    err = await _refused(image_server, image_server.url("/chain/4"))
    assert err.code == "image_fetch_failed" and "redirects" in err.message
    assert image_server.hits.get("/pixel.png", 0) == before  # the fourth hop was not taken


@pytest.mark.parametrize(
    "location",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/cat.png",
        "https://[fd00::1]/cat.png",
        "https://[::ffff:10.0.0.1]/cat.png",
    ],
)
async def test_redirect_to_a_private_address_is_refused(
    image_server: ImageServer, location: str
) -> None:
    url = image_server.url("/to") + "?location=" + location
    err = await _refused(image_server, url)
    assert err.code == "image_url_forbidden", err.message


async def test_redirect_to_plain_http_is_refused(image_server: ImageServer) -> None:
    target = f"http://127.0.0.1:{image_server.port}/pixel.png"
    err = await _refused(image_server, image_server.url("/to") + "?location=" + target)
    assert err.code == "unsupported_image" and "https" in err.message


@pytest.mark.parametrize(
    "url", ["https://[::1", "https://a:99999/", "https://xn--/x", "https://:0/", "/to?a:99999"]
)
async def test_malformed_urls_are_a_400_not_a_crash(image_server: ImageServer, url: str) -> None:
    if url.startswith("/"):  # a redirect to such a URL: the image server's fault
        url = image_server.url("/to") + "?location=https://a:99999/"
        err = await _refused(image_server, url)
        assert err.code == "image_fetch_failed" and "invalid redirect" in err.message
        return
    err = await _refused(image_server, url)
    assert err.code == "invalid_image_url"


async def test_loopback_refused_without_the_test_allowance(image_server: ImageServer) -> None:
    before = image_server.hits.get("/pixel.png", 0)
    # A name that resolves to loopback (checked after resolution) and loopback literals.
    for host in ("localhost", "127.0.0.1", "[::1]"):
        url = image_server.url("/pixel.png", host=host)
        err = await _refused(image_server, url, allow_loopback=False)
        assert err.code == "image_url_forbidden" and "loopback" in err.message, err.message
    assert image_server.hits.get("/pixel.png", 0) == before  # never connected
    # The same name with the allowance: resolution, connection and certificate all work.
    assert await _fetch(image_server, image_server.url("/pixel.png", host="localhost")) == PNG_URL


async def test_timeout_status_and_untrusted_certificate(image_server: ImageServer) -> None:
    err = await _refused(image_server, image_server.url("/slow.png"), timeout_s=0.5)
    assert err.code == "image_fetch_timeout"
    err = await _refused(image_server, image_server.url("/missing.png"))
    assert err.code == "image_fetch_failed" and "404" in err.message
    fetcher = ImageFetcher(_limits())  # the system CAs: the self-signed server is not trusted
    try:
        with pytest.raises(ApiError) as info:
            await fetcher.fetch(image_server.url("/pixel.png"), "p")
        assert info.value.code == "image_fetch_failed"
    finally:
        await fetcher.close()


def _refs(*urls: str) -> tuple[tuple[str, str], ...]:
    return tuple((url, f"messages[{i}].content[0].image_url") for i, url in enumerate(urls))


async def test_inline_fetches_every_https_image_and_bounds_the_request(
    image_server: ImageServer,
) -> None:
    pixel, page = image_server.url("/pixel.png"), image_server.url("/page.html")
    fetcher = ImageFetcher(_limits(), image_server.client_context())
    try:
        turn = TurnRequest(prompt="look", images=(pixel, PNG_URL))
        inlined = await fetcher.inline(turn, _refs(pixel, PNG_URL))
        assert inlined.images == (PNG_URL, PNG_URL) and inlined.prompt == "look"
        text_only = TurnRequest(prompt="hi")
        assert await fetcher.inline(text_only, ()) is text_only
        # The failing image is named, whichever position it has.
        bad = TurnRequest(prompt="x", images=(PNG_URL, page))
        with pytest.raises(ApiError) as info:
            await fetcher.inline(bad, _refs(PNG_URL, page))
        assert info.value.param == "messages[1].content[0].image_url"
        assert info.value.code == "unsupported_image"
    finally:
        await fetcher.close()
    # All images of one request together stay under maxImageBytesPerRequest.
    fetcher = ImageFetcher(
        _limits(max_bytes=3 * MIB, max_request_bytes=3 * MIB), image_server.client_context()
    )
    try:
        big, big2 = image_server.url("/big.png"), image_server.url("/big.png?copy=2")
        one = await fetcher.inline(TurnRequest(prompt="x", images=(big, big)), _refs(big, big))
        assert one.images[0] == one.images[1]  # 2 MiB, fetched once: it fits
        with pytest.raises(ApiError) as info:
            await fetcher.inline(TurnRequest(prompt="x", images=(big, big2)), _refs(big, big2))
        assert info.value.code == "images_too_large" and info.value.param == "messages"
        inline_big = "data:image/png;base64," + "A" * (3 * MIB * 4 // 3 + 8)
        with pytest.raises(ApiError) as info:
            await fetcher.inline(
                TurnRequest(prompt="x", images=(inline_big, pixel)), _refs(inline_big, pixel)
            )
        assert info.value.code == "image_too_large"
        assert info.value.param == "messages[0].content[0].image_url"
    finally:
        await fetcher.close()


async def test_inline_rewrites_images_in_the_history_without_touching_the_items(
    image_server: ImageServer,
) -> None:
    """Earlier messages go to Codex as injected history items: their https images become
    data URLs too, in copies (the conversation's digests keep the client's URLs)."""
    pixel, chain = image_server.url("/pixel.png"), image_server.url("/chain/1")
    first = {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": pixel},
        ],
    }
    answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text"}]}
    turn = TurnRequest(prompt="and this?", images=(chain,), history=(first, answer))
    fetcher = ImageFetcher(_limits(), image_server.client_context())
    try:
        inlined = await fetcher.inline(turn, _refs(pixel, chain))
        assert inlined.images == (PNG_URL,)
        assert inlined.history[0]["content"][1] == {"type": "input_image", "image_url": PNG_URL}
        assert inlined.history[0]["content"][0] is first["content"][0]
        assert inlined.history[1] is answer
        assert first["content"][1]["image_url"] == pixel  # the original is unchanged
        # An image the request did not send itself (a stored conversation's) is named by the
        # fallback.
        bad = dict(first, content=[{"type": "input_image", "image_url": image_server.url("/x")}])
        with pytest.raises(ApiError) as info:
            await fetcher.inline(
                TurnRequest(prompt="", history=(bad,)), (), fallback_param="previous_response_id"
            )
        assert info.value.param == "previous_response_id"
        assert info.value.code == "image_fetch_failed"
    finally:
        await fetcher.close()


# --- through the app: the chat route names the part; downloads wait for a usable account -----

FAKE_CODEX = str(Path(__file__).resolve().parent.parent / "codexpool/testing/fake_codex.py")


async def _user_key(app: Any, tmp_path: Path, name: str, linked: bool = True) -> str:
    """Create a portal user (linked from a fake auth.json unless told otherwise); return a key."""
    from codexpool import linking, users
    from codexpool.app_keys import CIPHER, SETTINGS, STORE
    from codexpool.testing.fake_backend import make_auth_json

    user = await users.create_user(app[STORE], name, None)
    if linked:
        auth = tmp_path / f"{name}-auth.json"
        auth.write_text(json.dumps(make_auth_json(f"acct_{name}", f"{name}@example.com")))
        linking.import_auth_json(linking.codex_home(app[SETTINGS], user.id), auth)
    return await users.rotate_key(
        app[STORE],
        app[CIPHER],
        kind="user",
        prefix=app[SETTINGS].openai_api_key_prefix,
        user_id=user.id,
    )


def _chat_body(url: str) -> dict[str, Any]:
    return {
        "model": "codex",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]},
        ],
    }


CHAT = "/api/openai/v1/chat/completions"


async def test_chat_route_answers_400_naming_the_image_part(
    aiohttp_client: Any,
    make_settings: Any,
    image_server: ImageServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Through the app with the fake codex executable: each bad image is a 400 naming its
    part; a good one runs the turn; nothing is downloaded for a key whose account cannot
    serve (the pool's answer comes first)."""
    from codexpool.app import create_app

    from .users_helpers import assert_openai_error

    monkeypatch.setenv("SSL_CERT_FILE", str(image_server.cert))  # trust the test server
    settings = make_settings(testingImageFetchLoopback=True, maxImageBytes=MIB, codexBin=FAKE_CODEX)
    client = await aiohttp_client(create_app(settings))
    auth = {"Authorization": f"Bearer {await _user_key(client.app, tmp_path, 'ada')}"}
    for url, code in [
        (image_server.url("/page.html"), "unsupported_image"),
        (image_server.url("/big.png"), "image_too_large"),
        (image_server.url("/to") + "?location=https://169.254.169.254/", "image_url_forbidden"),
        ("https://[::1", "invalid_image_url"),
    ]:
        resp = await client.post(CHAT, json=_chat_body(url), headers=auth)
        err = await assert_openai_error(resp, 400, code)
        assert err["param"] == "messages[1].content[0].image_url"
    resp = await client.post(CHAT, json=_chat_body(image_server.url("/pixel.png")), headers=auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["choices"][0]["message"]["content"]

    unlinked = {"Authorization": f"Bearer {await _user_key(client.app, tmp_path, 'bo', False)}"}
    before = dict(image_server.hits)
    resp = await client.post(CHAT, json=_chat_body(image_server.url("/slow.png")), headers=unlinked)
    await assert_openai_error(resp, 403, "account_not_linked")
    assert image_server.hits == before


async def test_chat_route_refuses_loopback_by_default(
    aiohttp_client: Any, make_settings: Any, image_server: ImageServer, tmp_path: Path
) -> None:
    from codexpool.app import create_app

    from .users_helpers import assert_openai_error

    client = await aiohttp_client(create_app(make_settings(codexBin=FAKE_CODEX)))
    auth = {"Authorization": f"Bearer {await _user_key(client.app, tmp_path, 'cy')}"}
    before = image_server.hits.get("/pixel.png", 0)
    url = image_server.url("/pixel.png", host="localhost")
    body = {
        "model": "codex",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    }
    resp = await client.post(CHAT, json=body, headers=auth)
    err = await assert_openai_error(resp, 400, "image_url_forbidden")
    assert err["param"] == "messages[0].content[1].image_url"
    assert image_server.hits.get("/pixel.png", 0) == before
