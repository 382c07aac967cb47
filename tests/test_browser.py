"""The web panel and portal in real headless Chromium against the real server, the real codex
binary and the fake ChatGPT backend: every admin and portal action a person takes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from codexpool.testing.fake_backend import codex_overrides

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Any:
    """Launch Debian's chromium through Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_portal_and_admin_flows(
    browser: Any, live_server_factory: Any, fake_backend: Any, codex_bin: str
) -> None:
    server = live_server_factory(
        testingLoginIssuer=fake_backend.url, codexConfigOverrides=codex_overrides(fake_backend.url)
    )
    fake_backend.set_device_account("acct_browser", "browser@example.com")
    errors: list[str] = []

    # --- portal: register, link, key, quick test -------------------------------------------
    portal = browser.new_page(viewport={"width": 1100, "height": 900})
    portal.on("pageerror", lambda exc: errors.append(str(exc)))
    portal.goto(server.url + "/openai")
    portal.fill("input[name=username]", "browser.user")
    portal.fill("input[name=password]", "a-long-password")
    portal.click("button[data-action=register]")
    portal.wait_for_selector("text=Link ChatGPT account")
    portal.click("text=Link ChatGPT account")
    code = portal.wait_for_selector("#user-code").inner_text()
    assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}", code)
    link = portal.locator("#device a")
    assert link.get_attribute("href") == fake_backend.url + "/codex/device"
    assert link.get_attribute("target") == "_blank"
    shot(portal, "portal-device-code")
    assert fake_backend.approve_device(code)
    portal.wait_for_selector("#device >> text=linked", timeout=30_000)

    portal.fill("#rotate-key input[name=label]", "<img src=x onerror=alert(1)>")
    portal.click("#rotate-key button")
    key = portal.wait_for_selector("#new-key").inner_text()
    assert key.startswith("sk-test-")
    assert "Authorization: Bearer " + key in portal.inner_text("#key-new")
    # The label with markup is shown as text, never parsed.
    portal.wait_for_selector("#key-hint")
    assert "<img src=x onerror=alert(1)>" in portal.inner_text("#key")
    assert portal.locator("#key img").count() == 0

    portal.fill("#quick textarea", "Say hello")
    fake_backend.script(
        "acct_browser",
        fake_backend.reply("Hello from the fake backend.", chunks=3, delay_between_ms=400),
    )
    portal.click("#quick button")
    # The form's button stays disabled while the answer streams (web/dom.js onSubmit).
    portal.wait_for_selector("#quick button:disabled")
    # (wait_for_function would need eval, which the page's CSP rightly forbids)
    portal.wait_for_selector("#answer:has-text('Hello from the fake backend.')")
    portal.wait_for_selector("#quick button:enabled")
    portal.wait_for_selector("#usage td")  # the quick test shows up in the user's own usage
    shot(portal, "portal")
    portal.set_viewport_size({"width": 360, "height": 780})
    shot(portal, "portal-360")
    # Nothing spills sideways at phone width.
    assert portal.evaluate("document.documentElement.scrollWidth") <= 360

    # --- admin: redirect, sign in, table, reveal, rotate master, delete --------------------
    admin = browser.new_page(viewport={"width": 1280, "height": 900})
    admin.on("pageerror", lambda exc: errors.append(str(exc)))
    admin.goto(server.url + "/")
    assert admin.url.endswith("/login")
    admin.fill("input[name=username]", "admin")
    admin.fill("input[name=password]", "admin-password-for-tests")
    admin.click("button[type=submit]")
    admin.wait_for_url(server.url + "/")
    row = admin.wait_for_selector("tr[data-username='browser.user']")
    assert "linked" in row.inner_text()
    admin.click("tr[data-username='browser.user'] >> text=Reveal key")
    revealed = admin.wait_for_selector("#master-new code.key").inner_text()
    assert revealed == key
    # Per-key limits: set them in the dialog; the table and the owner's portal show them.
    admin.click("tr[data-username='browser.user'] >> text=Limits")
    admin.fill("#limits-form input[name=tokensPerDay]", "10000000000000")  # over 10^12
    admin.click("#limits-form button[type=submit]")
    admin.wait_for_selector("#limits-status.status-error")  # the server's 400, shown inline
    admin.fill("#limits-form input[name=tokensPerDay]", "")
    admin.fill("#limits-form input[name=requestsPerDay]", "100")
    admin.fill("#limits-form input[name=allowedModels]", "gpt-5.5, codex")
    admin.click("#limits-form button[type=submit]")
    # The portal's quick test above counted against the user's key.
    admin.wait_for_selector("tr[data-username='browser.user'] td.limits >> text=1/100 req")
    cell = admin.locator("tr[data-username='browser.user'] td.limits")
    assert "gpt-5.5, codex" in cell.inner_text()
    assert not admin.locator("#limits-dialog").is_visible()
    portal.reload()
    assert "/ 100 requests today" in portal.wait_for_selector("#key-limits").inner_text()
    admin.click("#rotate-master button")
    admin.wait_for_selector("text=New master key")
    master = admin.inner_text("#master-new code.key")
    assert master.startswith("sk-master-")
    admin.wait_for_selector("#audit >> text=key.reveal")
    admin.click("#master >> text=Limits")
    admin.fill("#limits-form input[name=concurrentRequests]", "4")
    admin.click("#limits-form button[type=submit]")
    admin.wait_for_selector("#master-limits >> text=0 / 4 at once")
    # The portal's quick test shows in the usage view with its cached tokens and hit share
    # (the fake backend reports 3 of 11 input tokens as cached: 27%).
    cache_row = admin.wait_for_selector("#usage-cache tr:has-text('browser.user')").inner_text()
    assert "11" in cache_row and "3" in cache_row and "27%" in cache_row, cache_row
    shot(admin, "admin")
    admin.on("dialog", lambda dialog: dialog.accept())
    admin.click("tr[data-username='browser.user'] >> text=Delete")
    admin.wait_for_selector("tr[data-username='browser.user']", state="detached")
    assert "Deleted browser.user" in admin.inner_text("#status")

    # The deleted user's portal session is gone: the portal falls back to sign-in.
    portal.reload()
    portal.wait_for_selector("#signin:not([hidden])")
    assert not errors, errors


def test_admin_marks_an_account_on_codex_instructions(
    browser: Any,
    live_server_factory: Any,
    fake_backend: Any,
    codex_bin: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """An account whose backend refused the client's instructions carries a marker in the
    admin table; one that never was does not."""
    import openai

    from .e2e_helpers import link_user

    fake_backend.require_codex_instructions(True)
    request.addfinalizer(lambda: fake_backend.require_codex_instructions(False))
    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url)
    )
    key = link_user(server, tmp_path, "refused", "acct_browser_refused")
    link_user(server, tmp_path, "plain", "acct_browser_plain")
    server.start()
    with openai.OpenAI(base_url=server.api, api_key=key, max_retries=0) as client:
        answer = client.chat.completions.create(
            model="gpt-5.5", messages=[{"role": "user", "content": "Hi"}]
        )
    assert answer.choices[0].message.content == "Hello from the fake backend."

    errors: list[str] = []
    admin = browser.new_page(viewport={"width": 1280, "height": 900})
    admin.on("pageerror", lambda exc: errors.append(str(exc)))
    admin.goto(server.url + "/login")
    admin.fill("input[name=username]", "admin")
    admin.fill("input[name=password]", "admin-password-for-tests")
    admin.click("button[type=submit]")
    admin.wait_for_url(server.url + "/")
    marker = admin.wait_for_selector(
        "tr[data-username='refused'] [data-marker=instructions-fallback]"
    )
    assert marker.inner_text() == "Codex instructions"
    assert "refused the client's instructions" in (marker.get_attribute("title") or "")
    assert admin.locator("tr[data-username='plain'] [data-marker]").count() == 0
    shot(admin, "admin-instructions-fallback")
    assert not errors, errors
