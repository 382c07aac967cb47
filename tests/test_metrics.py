"""GET /metrics: Prometheus text for the metrics token or an admin session, nobody else; the
access middleware counts every request by route template and status."""

from __future__ import annotations

from typing import Any

from .users_helpers import assert_openai_error


async def test_metrics_needs_token_or_admin(aiohttp_client: Any, make_settings: Any) -> None:
    from codexpool.app import create_app

    client = await aiohttp_client(create_app(make_settings(metricsToken="m" * 24)))
    await assert_openai_error(await client.get("/metrics"), 401, "authentication_required")
    resp = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    await assert_openai_error(resp, 401, "invalid_metrics_token")

    assert (await client.get("/api/health")).status in (200, 503)
    await client.get("/no/such/path/123")
    resp = await client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 24})
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert 'codexpool_http_requests_total{method="GET",route="/api/health"' in text
    assert 'route="unmatched"' in text and "/no/such/path" not in text
    for name in (
        "codexpool_eligible_accounts",
        "codexpool_linked_accounts",
        "codexpool_codex_processes",
        "codexpool_app_server_starts_total 0.0",
        "codexpool_app_server_recycles_total 0.0",
        "codexpool_conversations 0.0",
        "codexpool_time_to_first_token_seconds",
        "codexpool_http_request_duration_seconds_bucket",
    ):
        assert name in text, name


async def test_metrics_registry_is_per_app(aiohttp_client: Any, make_settings: Any) -> None:
    from codexpool.app import create_app

    a = await aiohttp_client(create_app(make_settings(metricsToken="t" * 24)))
    b = await aiohttp_client(create_app(make_settings(metricsToken="t" * 24)))
    for _ in range(3):
        await a.get("/api/health")
    auth = {"Authorization": "Bearer " + "t" * 24}
    text_b = await (await b.get("/metrics", headers=auth)).text()
    assert 'route="/api/health"' not in text_b
