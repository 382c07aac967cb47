"""docs/api.md stays in step with the router: every documented admin/portal route exists and
every registered admin/portal route is documented."""

from __future__ import annotations

import re
from pathlib import Path

from codexpool.config import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
HEADING = re.compile(r"^### `(GET|POST) (/api/[^`?\s]+)")
ALIASES = re.compile(r"`(POST) (/api/admin/openai-users/rotate-owner[^`]*)`")
DOCUMENTED_PREFIXES = (
    "/api/auth/",
    "/api/admin/",
    "/api/openai/auth/",
    "/api/openai/keys/",
    "/api/openai/pool/",
    "/api/openai/codex/",
    "/api/openai/usage",
    "/api/openai/requests",
)


def documented() -> set[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    routes = {m.groups() for line in text.splitlines() if (m := HEADING.match(line))}
    routes |= set(ALIASES.findall(text))
    return routes


def test_doc_and_router_agree(settings: Settings) -> None:
    from codexpool.app import create_app

    app = create_app(settings)
    registered = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method in ("GET", "POST") and r.resource.canonical.startswith(DOCUMENTED_PREFIXES)
    }
    assert documented() == registered
