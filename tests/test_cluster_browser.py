"""The admin panel's Nodes card in headless Chromium: two real nodes on one database, each
account shown under the node that owns it; a single node shows no card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster_helpers import balanced, make_nodes, wait_until
from tests.e2e_helpers import link_user
from tests.test_browser import browser  # noqa: F401  (the Chromium fixture)

pytestmark = pytest.mark.browser


def _sign_in(page: Any, url: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def test_nodes_card_lists_nodes_and_their_accounts(
    browser: Any,  # noqa: F811
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
) -> None:
    nodes, _ = make_nodes(live_server_factory, fake_backend.url, 2)
    for name in ("alice", "bobby"):
        link_user(nodes[0], tmp_path, name, f"acct_{name}")
    for node in nodes:
        node.start()
    owner = wait_until(balanced(nodes, 2), what="one account per node")
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(page, nodes[1].url)
    card = page.wait_for_selector("#cluster:not([hidden])")
    rows = page.locator("#cluster-nodes tr")
    assert rows.count() == 2
    text = card.inner_text()
    assert "node-b (this node)" in text and "node-a" in text
    for uid, name in ((1, "alice"), (2, "bobby")):
        row = page.locator("#cluster-nodes tr", has_text=owner[uid])
        assert name in row.inner_text()
    assert not errors

    single = live_server_factory()
    page2 = browser.new_page()
    _sign_in(page2, single.url)
    page2.wait_for_selector("#users")
    page2.wait_for_timeout(500)  # the first refresh has rendered
    assert page2.locator("#cluster").is_hidden()
