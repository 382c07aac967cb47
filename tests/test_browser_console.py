"""The operator's console in real headless Chromium against the real server and real codex:
the request log (filter, expand, page) in the admin panel and the portal."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.e2e_helpers import post_chat
from tests.test_browser import browser, shot  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser


def chat(server: Any, key: str, request_id: str) -> int:
    """Send one streamed chat completion with the user's key; return the status."""
    body = {"model": "codex", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    return post_chat(server.url + "/api/openai/v1/chat/completions", key, body, request_id)


def sign_in_admin(page: Any, url: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def test_request_log_filters_and_expands(browser: Any, linked: Any, fake_backend: Any) -> None:  # noqa: F811
    server, key = linked
    assert chat(server, key, "browser-ok-1") == 200
    fake_backend.script("acct_alice", fake_backend.status(500))
    assert chat(server, key, "browser-fail-1") == 502
    # Older history (straight into the server's SQLite file) to page through: 60 pool rows.
    con = sqlite3.connect(server.settings.db_path)
    with con:
        con.executemany(
            "INSERT INTO requests (ts, endpoint, key_kind, account_user_id, status, model,"
            " request_id) VALUES (?, 'chat.completions', 'master', 1, 200, 'gpt-5.5', ?)",
            [(time.time() - 3600 - i, f"old-{i}") for i in range(60)],
        )
    con.close()
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in_admin(page, server.url)
    log = "#requests"
    page.wait_for_selector(f"{log} tr[data-request-id='browser-fail-1']")
    assert page.locator(f"{log} tr.req").count() == 50  # one page
    assert "more below" in page.inner_text(f"{log} [data-log=status]")
    page.click(f"{log} button.more")
    page.wait_for_selector(f"{log} tr[data-request-id='old-59']")
    assert page.locator(f"{log} tr.req").count() == 62
    assert page.locator(f"{log} button.more").is_hidden()

    # The usage chart: 62 requests today, split by key, per hour, with tooltips.
    summary = page.wait_for_selector("#usage-charts [data-usage=summary]:has-text('requests')")
    assert summary.inner_text().startswith("62 requests, 1 error,")
    page.select_option("#usage-charts select[name=by]", "key")
    page.select_option("#usage-charts select[name=bucket]", "hour")
    chart = page.wait_for_selector("#usage-charts svg[aria-label='Requests per hour']")
    tips = [t.text_content() for t in page.locator("#usage-charts svg rect.seg title").all()]
    assert any("alice sk-" in t for t in tips) and any("master key" in t for t in tips), tips
    assert chart.is_visible()

    # Filter: only failures.
    page.select_option(f"{log} select[name=status]", "5xx")
    page.click(f"{log} form button[type=submit]")
    page.wait_for_selector(f"{log} tr[data-request-id='old-0']", state="detached")
    rows = page.locator(f"{log} tr.req")
    assert rows.count() == 1
    assert "502" in rows.first.inner_text() and "upstream_error" in rows.first.inner_text()
    detail = page.locator(f"{log} tr.req-detail").first
    assert detail.is_hidden()
    page.click(f"{log} tr[data-request-id='browser-fail-1'] button")
    assert detail.is_visible()
    text = detail.inner_text()
    assert "browser-fail-1" in text and "upstream" in text
    shot(page, "admin-request-log")

    # Filter by user (the datalist offers the names) and status 2xx: the good request only.
    page.select_option(f"{log} select[name=status]", "2xx")
    page.fill(f"{log} input[name=user]", "alice")
    page.click(f"{log} form button[type=submit]")
    page.wait_for_selector(f"{log} tr[data-request-id='browser-fail-1']", state="detached")
    assert [r.get_attribute("data-request-id") for r in page.locator(f"{log} tr.req").all()] == [
        "browser-ok-1"
    ]
    # An unknown user is the server's 404, shown in the log's status line.
    page.fill(f"{log} input[name=user]", "nobody")
    page.click(f"{log} form button[type=submit]")
    page.wait_for_selector(f"{log} [data-log=status].status-error")
    assert "nobody" in page.inner_text(f"{log} [data-log=status]")
    # Clear brings everything back.
    page.click(f"{log} form button[type=reset]")
    page.wait_for_selector(f"{log} tr[data-request-id='old-10']")

    assert not errors, errors


def test_portal_request_log(browser: Any, live_server_factory: Any) -> None:  # noqa: F811
    server = live_server_factory()
    portal = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    portal.on("pageerror", lambda exc: errors.append(str(exc)))
    portal.goto(server.url + "/openai")
    portal.fill("input[name=username]", "pat")
    portal.fill("input[name=password]", "a-long-password")
    portal.click("button[data-action=register]")
    portal.wait_for_selector("#requests [data-log=status]:has-text('No requests match')")
    con = sqlite3.connect(server.settings.db_path)
    with con:
        pat = con.execute("SELECT id FROM users WHERE username = 'pat'").fetchone()[0]
        other = con.execute(
            "INSERT INTO users (username, created_at) VALUES ('other', 0)"
        ).lastrowid
        now = time.time()
        con.executemany(
            "INSERT INTO requests (ts, endpoint, key_kind, key_user_id, account_user_id, status,"
            " request_id) VALUES (?, 'chat.completions', 'user', ?, ?, ?, ?)",
            [
                (now - 5, pat, pat, 200, "pat-ok"),
                (now - 4, pat, pat, 429, "pat-limited"),
                (now - 3, other, other, 200, "other-ok"),
            ],
        )
    con.close()
    portal.click("#requests form button[type=submit]")
    portal.wait_for_selector("#requests tr[data-request-id='pat-limited']")
    ids = [r.get_attribute("data-request-id") for r in portal.locator("#requests tr.req").all()]
    assert ids == ["pat-limited", "pat-ok"]  # never the other user's
    assert portal.locator("#requests input[name=user]").count() == 0
    portal.select_option("#requests select[name=status]", "4xx")
    portal.click("#requests form button[type=submit]")
    portal.wait_for_selector("#requests tr[data-request-id='pat-ok']", state="detached")
    assert portal.locator("#requests tr.req").count() == 1
    # The owner's usage chart counts the same two requests (none of the other user's).
    portal.reload()
    summary = portal.wait_for_selector("#usage-charts [data-usage=summary]:has-text('requests')")
    assert summary.inner_text().startswith("2 requests, 1 error,")
    assert portal.locator("#usage-charts svg rect.seg").count() == 1
    portal.select_option("#usage-charts select[name=bucket]", "hour")
    portal.wait_for_selector("#usage-charts svg[aria-label='Requests per hour']")
    portal.set_viewport_size({"width": 360, "height": 780})
    assert portal.evaluate("document.documentElement.scrollWidth") <= 360
    assert not errors, errors


def test_quota_charts_and_projection(browser: Any, live_server_factory: Any) -> None:  # noqa: F811
    server = live_server_factory()
    now = time.time()
    con = sqlite3.connect(server.settings.db_path)
    with con:
        ids = []
        for name in ("ivy", "jon"):
            cur = con.execute("INSERT INTO users (username, created_at) VALUES (?, 0)", (name,))
            ids.append(cur.lastrowid)
        h_reset, w_reset = int(now + 5 * 3600), int(now + 6 * 86400)
        points = [
            (ids[0], now - 20 * 3600, 70, 30, int(now - 16 * 3600), w_reset),  # an old window
            (ids[0], now - 3000, 20, 40, h_reset, w_reset),
            (ids[0], now - 60, 50, 42, h_reset, w_reset),
            (ids[1], now - 3000, 10, 5, h_reset, w_reset),
            (ids[1], now - 60, 10, 5, h_reset, w_reset),
        ]
        con.executemany(
            "INSERT INTO quota_history (user_id, ts, primary_used, secondary_used,"
            " primary_resets_at, secondary_resets_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(u, t, p, s, pr, sr) for u, t, p, s, pr, sr in points],
        )
    con.close()
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in_admin(page, server.url)
    pool = page.wait_for_selector("#quota [data-quota=pool]")
    text = pool.inner_text()
    assert "1.4 of 2 accounts left" in text  # 50 % + 90 % left, not "140 %"
    assert "the pool runs out in ~" in text
    ivy = page.locator("#quota [data-quota=ivy]")
    hourly = ivy.locator(".projection[data-window=hourly]").inner_text()
    assert "50% used" in hourly and "runs out in ~1 h" in hourly
    assert (
        "not used in the last hour"
        in page.locator("#quota [data-quota=jon] .projection[data-window=hourly]").inner_text()
    )
    # The charts are SVG drawn by the page: lines, axes and the reset marks (with tooltips).
    assert ivy.locator("svg path.line").count() == 2
    assert ivy.locator("svg line.mark").count() >= 1
    assert "window resets" in ivy.locator("svg line.mark title").first.text_content()
    page.click("#quota [data-quota-range='168']")
    page.wait_for_selector("#quota svg[aria-label*='last 168 h']")
    shot(page, "admin-quota")
    assert not errors, errors


def test_failed_alert_deliveries_are_listed(
    browser: Any,  # noqa: F811
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Any,
) -> None:
    from codexpool.testing.fake_backend import codex_overrides
    from tests.e2e_helpers import link_user
    from tests.test_alerts import Receiver

    receiver = Receiver(fail_first=1000)  # a webhook that always answers 500
    try:
        server = live_server_factory(
            start=False,
            codexConfigOverrides=codex_overrides(fake_backend.url),
            alertWebhookUrl=receiver.url,
        )
        link_user(server, tmp_path, "alice", "acct_alert_panel")
        fake_backend.set_usage("acct_alert_panel", primary_used=95, secondary_used=5)
        server.start()
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        sign_in_admin(page, server.url)
        item = page.wait_for_selector(
            "#alerts-list li[data-kind=quota_threshold][data-state=retrying]", timeout=30_000
        )
        text = item.inner_text()
        assert "alice" in text and "95%" in text and "HTTP 500" in text
        assert "Sent to the webhook" in page.inner_text("#alerts-note")
        assert not errors, errors
    finally:
        receiver.close()


AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """Inject the pinned axe-core and return its serious and critical findings."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate(AXE_RUN)
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_layout_themes_and_accessibility(browser: Any, live_server_factory: Any) -> None:  # noqa: F811
    """Login, panel and portal: axe-core finds nothing serious in light or dark, nothing
    spills sideways at 360 px, keyboard focus is visible, the theme toggle sticks; screenshots
    at 1280 and 390 px in both themes go to tests/artifacts/."""
    if not AXE.exists():
        pytest.skip("axe-core not installed (scripts/install-axe.sh)")
    server = live_server_factory()
    con = sqlite3.connect(server.settings.db_path)
    with con:
        ivy = con.execute("INSERT INTO users (username, created_at) VALUES ('ivy', 0)").lastrowid
        now = time.time()
        con.executemany(
            "INSERT INTO requests (ts, endpoint, key_kind, key_user_id, account_user_id, status,"
            " model, request_id, error_code, latency_ms, input_tokens, cached_tokens,"
            " output_tokens) VALUES (?, 'chat.completions', 'user', ?, ?, ?, 'gpt-5.5', ?, ?,"
            " 900, 1200, 300, 80)",
            [
                (now - i * 600, ivy, ivy, 502 if i % 7 == 0 else 200, f"r-{i}", None)
                for i in range(30)
            ],
        )
        con.executemany(
            "INSERT INTO quota_history (user_id, ts, primary_used, secondary_used,"
            " primary_resets_at, secondary_resets_at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (ivy, now - 3600 + i * 600, 20 + 5 * i, 30 + i, int(now + 7200), int(now + 4e5))
                for i in range(7)
            ],
        )
    con.close()
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    pages = {
        "login": server.url + "/login",
        "admin": server.url + "/",
        "portal": server.url + "/openai",
    }
    # Sign in to both the panel and the portal in this browser context.
    page.goto(pages["portal"])
    page.fill("input[name=username]", "pat")
    page.fill("input[name=password]", "a-long-password")
    page.click("button[data-action=register]")
    page.wait_for_selector("#app:not([hidden])")
    sign_in_admin(page, server.url)
    page.wait_for_selector("#quota [data-quota=ivy]")
    found: dict[str, Any] = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for name, url in pages.items():
            if name == "login":
                login = context.new_page()  # the signed-in admin would be sent on from /login
                login.emulate_media(color_scheme=scheme)
                login.goto(url)
                target = login
            else:
                page.goto(url)
                target = page
            target.wait_for_selector("main")
            if name == "admin":
                target.wait_for_selector("#quota [data-quota=ivy] svg")
                target.wait_for_selector("#requests tr.req")
            if name == "portal":
                target.wait_for_selector("#app:not([hidden])")
            found[f"{name}-{scheme}"] = serious_violations(target)
            target.set_viewport_size({"width": 1280, "height": 900})
            shot(target, f"{name}-1280-{scheme}")
            for width in (390, 360):
                target.set_viewport_size({"width": width, "height": 800})
                scroll = target.evaluate("document.documentElement.scrollWidth")
                assert scroll <= width, f"{name} spills sideways at {width} px: {scroll}"
            target.set_viewport_size({"width": 390, "height": 800})
            shot(target, f"{name}-390-{scheme}")
            target.set_viewport_size({"width": 1280, "height": 900})
            if target is not page:
                target.close()
    assert not any(found.values()), found
    # Keyboard: Tab reaches the controls and the focused one shows a visible outline.
    page.goto(pages["admin"])
    page.wait_for_selector("#requests tr.req")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "({tag: document.activeElement.tagName,"
        " outline: getComputedStyle(document.activeElement).outlineStyle})"
    )
    assert focused["tag"] in ("A", "BUTTON", "INPUT", "SELECT") and focused["outline"] != "none"
    # The request log's expand button works from the keyboard.
    page.focus("#requests tr.req button")
    page.keyboard.press("Enter")
    assert page.locator("#requests tr.req-detail").first.is_visible()
    # The theme toggle overrides the system and sticks across a reload.
    page.emulate_media(color_scheme="light")
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.reload()
    page.wait_for_selector("main")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    assert not errors, errors
