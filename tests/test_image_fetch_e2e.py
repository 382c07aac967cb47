"""Images by URL end to end: the openai SDK sends an https image URL, the real server downloads
it from a loopback image server, and the real codex binary carries it to the fake ChatGPT
backend as a data URL (Codex 0.169 itself refuses remote image URLs)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from codexpool.testing.fake_backend import codex_overrides
from tests.e2e_helpers import link_user, usage_rows

from .image_server import PNG, ImageServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[ImageServer]:
    server = ImageServer(tmp_path).start()
    yield server
    server.stop()


def test_https_image_reaches_the_backend_as_a_data_url(
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    image_server: ImageServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    openai_client: Any,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(image_server.cert))  # the server trusts the test CA
    server = live_server_factory(
        start=False,
        codexConfigOverrides=codex_overrides(fake_backend.url),
        testingImageFetchLoopback=True,
    )
    key = link_user(server, tmp_path, "alice", "acct_alice")
    fake_backend.set_usage("acct_alice", primary_used=10, secondary_used=5)
    server.start()
    client = openai_client(server, key)
    fake_backend.script("acct_alice", fake_backend.reply("A small pink picture."))

    url = image_server.url("/chain/2")  # two redirects, then the PNG
    done = client.chat.completions.create(
        model="codex",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    assert done.choices[0].message.content == "A small pink picture."
    assert image_server.hits.get("/pixel.png") == 1
    sent = json.dumps(fake_backend.requests("/codex/responses")[-1]["body"])
    assert "data:image/png;base64," + base64.b64encode(PNG).decode() in sent
    assert "127.0.0.1" not in sent  # the URL itself never went upstream

    # An image in an earlier message reaches Codex in the injected history, as a data URL too.
    fake_backend.script("acct_alice", fake_backend.reply("Still pink."))
    done = client.chat.completions.create(
        model="codex",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Remember this picture."},
                    {"type": "image_url", "image_url": {"url": image_server.url("/pixel.png")}},
                ],
            },
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "What colour was it?"},
        ],
    )
    assert done.choices[0].message.content == "Still pink."
    sent = json.dumps(fake_backend.requests("/codex/responses")[-1]["body"])
    assert "data:image/png;base64," + base64.b64encode(PNG).decode() in sent
    assert "127.0.0.1" not in sent and "Remember this picture." in sent

    # A URL that redirects to the metadata address: a 400 naming the part, no turn started.
    turns_before = len(fake_backend.requests("/codex/responses"))
    bad = image_server.url("/to") + "?location=https://169.254.169.254/latest/meta-data/"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="codex",
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": bad}}]},
            ],
        )
    assert info.value.body["code"] == "image_url_forbidden"
    assert info.value.body["param"] == "messages[1].content[0].image_url"
    assert len(fake_backend.requests("/codex/responses")) == turns_before
    assert server.stop() == 0  # graceful stop drains the usage writer
    assert usage_rows(server) == [(200, None, 0)] * 2 + [(400, "image_url_forbidden", 0)]
