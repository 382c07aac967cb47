"""The HTTP route modules: each has `ROUTES`, its table (openapi.py documents it), and
`setup(app)`, which adds the table and any lifetime the module owns."""

from __future__ import annotations

from types import ModuleType


def route_modules() -> tuple[ModuleType, ...]:
    """Return every route module, in the order create_app sets them up.

    The order matters where a module adds a lifetime (cleanup context): the alert watcher comes
    after the background tasks' context, device-login flows after the engine's, live execute
    runs last. Imported here, not at the top, because openapi.py needs this list and the
    openapi_doc route module imports openapi.py.
    """
    from . import (
        admin,
        alerts,
        device,
        execute,
        health,
        metrics,
        openai_api,
        openapi_doc,
        pages,
        portal,
        quicktest,
        quota,
        requests,
        usage_charts,
    )

    return (
        health,
        openapi_doc,  # GET /api/openapi.json
        openai_api,
        admin,
        portal,
        requests,  # the request log, admin and portal
        quota,  # quota history
        usage_charts,  # usage per hour/day for the charts
        alerts,  # + the alert watcher
        device,  # + device-login flows (stop their codex processes)
        quicktest,
        execute,  # + live execute runs (interrupted at the shutdown grace)
        pages,  # /, /login, /openai and /static/ with a strict CSP
        metrics,  # /metrics and the usage hook
    )
