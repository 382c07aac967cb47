"""The application factory: `create_app(settings)` builds the whole gateway without doing I/O.

Sockets, the database, codex processes and background tasks open in cleanup contexts, in
dependency order, so tests, `codexpool serve` and benchmarks all build the same app and a start
that fails halfway only tears down what actually started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from . import conversations, sessions, shared_quotas, shutdown
from .account_limits import LimitCache
from .admin_auth import last_admin_logout
from .app_keys import (
    ADMIN_AUTH,
    CIPHER,
    CODEX_BIN,
    ENGINE,
    IMAGE_FETCHER,
    ISOLATION,
    KEY_CACHE,
    KEY_QUOTAS,
    LIMITS,
    MODELS,
    POOL,
    PRINCIPAL,
    REFUSALS,
    RUN_GATE,
    SETTINGS,
    STORE,
    USAGE,
)
from .change_feed import ChangeFeed
from .cluster.lifetime import cluster_ctx
from .codex.engine import Engine, EngineConfig
from .codex.isolation import Isolation, gateway_isolation
from .config import Settings, find_codex_bin
from .csrf import csrf_middleware
from .errors import error_middleware
from .key_cache import KeyCache
from .key_limits import KeyQuotas
from .observe import access_middleware_factory
from .openai import tool_turns
from .openai.image_fetch import FetchLimits, ImageFetcher
from .openai.models import ModelCatalog
from .pool import Pool
from .quota_history import QuotaHistory
from .request_id import request_id_header, request_id_middleware
from .routes import route_modules
from .routes.pages import static_headers
from .run_gate import RunGate
from .security import KeyCipher
from .sessions import session_middleware
from .shared_quotas import SharedKeyQuotas
from .store import create_store
from .usage import UsageRecorder, run_pruner

_LOGGER = logging.getLogger(__name__)


def isolation(settings: Settings, settings_file: Path | None = None) -> Isolation:
    """Return the sandbox of the codex processes whose model can run commands: it hides the
    data folder, the Codex homes and the settings file (codex/isolation.py)."""
    return gateway_isolation(
        settings.bwrap_path, (settings.data_path, settings.codex_homes, settings_file)
    )


def engine_config(
    settings: Settings, codex_bin: str, sandbox: Isolation | None = None
) -> EngineConfig:
    """Map settings onto the engine's own configuration."""
    return EngineConfig(
        codex_bin=codex_bin,
        config_overrides=tuple(settings.codex_config_overrides),
        lean_chat=settings.chat_lean_features,
        instructions=settings.chat_instructions,
        base_instructions=settings.chat_base_instructions or None,
        max_turns_per_account=settings.max_turns_per_account,
        max_queue_wait_s=settings.max_queue_wait_ms / 1000,
        idle_shutdown_s=float(settings.app_server_idle_seconds),
        recycle_above_mib=settings.app_server_recycle_mib,
        turn_timeout_cap_s=settings.openai_codex_timeout_ms / 1000,
        heartbeat_s=settings.stream_keepalive_ms / 1000,
        scratch_root=settings.data_path / "scratch",
        state_root=settings.codex_state_path,
        # Only app-servers whose model can run commands need the sandbox (and pay its start).
        isolation=None if settings.chat_lean_features else sandbox,
        extra_env=(
            {"CODEX_REFRESH_TOKEN_URL_OVERRIDE": settings.testing_refresh_token_url}
            if settings.testing_refresh_token_url
            else {}
        ),
    )


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = create_store(app[SETTINGS])
    await store.open()
    app[STORE] = store
    app[KEY_CACHE] = KeyCache(store)
    yield
    await store.close()


async def _usage_ctx(app: web.Application) -> AsyncIterator[None]:
    recorder = UsageRecorder(app[STORE], app[SETTINGS].data_path / "usage-spool.jsonl")
    await recorder.start()
    app[USAGE] = recorder
    settings = app[SETTINGS]
    if not settings.shares_state:
        app[KEY_QUOTAS] = KeyQuotas(app[STORE])
        yield
    else:  # the counts in the database: caps hold across nodes (shared_quotas.py)
        quotas = SharedKeyQuotas(app[STORE], settings.node_name, settings.slot_lease_seconds)
        app[KEY_QUOTAS] = quotas
        async with shared_quotas.running(quotas):
            yield
    await recorder.close()  # after the engine stopped: every finished request gets its row


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = Engine(engine_config(settings, app[CODEX_BIN] or "codex", app.get(ISOLATION)))
    await engine.start()
    app[ENGINE] = engine
    limits = LimitCache(app[STORE], engine, settings.openai_rate_limit_cache_ttl_ms / 1000)
    limits.history = QuotaHistory(app[STORE])
    await limits.load()  # last good snapshots survive restarts (stale until re-read)
    engine.on_rate_limits = limits.on_push  # pushed after every turn: no extra reads
    app[LIMITS] = limits
    app[POOL] = Pool(settings, app[STORE], limits)
    yield
    await engine.close()  # ends every app-server process group
    await limits.close()  # cancels reads in flight, writes the last snapshots
    await app[POOL].close()  # cooldown writes under way (sharedState)


async def _image_fetcher_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client session for every image download (image_fetch.py)."""
    fetcher = ImageFetcher(FetchLimits.from_settings(app[SETTINGS]))
    app[IMAGE_FETCHER] = fetcher
    yield
    await fetcher.close()


async def _background_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the limit refresher, the snapshot persister and usage pruning; cancel on exit."""
    limits, pool, settings = app[LIMITS], app[POOL], app[SETTINGS]
    await pool.candidates()  # the refresher's first round sees every account
    tasks = [
        asyncio.create_task(limits.run_refresher(pool.targets), name="limits-refresher"),
        asyncio.create_task(limits.run_persister(), name="limits-persister"),
        asyncio.create_task(
            run_pruner(app[STORE], settings.usage_retention_days), name="usage-pruner"
        ),
    ]
    if settings.shares_state:  # other nodes' limit readings and pushes (limits.py)
        tasks.append(asyncio.create_task(limits.run_merger(), name="limits-merger"))
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _change_feed_ctx(app: web.Application) -> AsyncIterator[None]:
    """With sharedState: follow the other nodes' writes (change_feed.py) and drop this node's
    caches: key lookups (through the store's generation), the pool index with its cooldowns,
    the admin session fence."""
    store, pool, auth = app[STORE], app[POOL], app[ADMIN_AUTH]

    async def reload_fence() -> None:
        auth.not_before = max(auth.not_before, await last_admin_logout(store))

    feed = ChangeFeed(store)
    feed.add_listener(pool.reload)
    feed.add_listener(reload_fence)
    task = asyncio.create_task(feed.run(), name="change-feed")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings, settings_file: Path | None = None) -> web.Application:
    """Build the gateway application for these settings (no I/O happens here); the sandbox
    of model commands also hides `settings_file` (the data folder's is hidden anyway)."""
    # Every middleware, outermost first; no module adds one elsewhere. Order matters:
    middlewares = [
        # Access log line and request counters: outermost, so they see the status error
        # shaping made and the latency of the whole request, streams included.
        access_middleware_factory(lambda request: request.get(PRINCIPAL)),
        # Request id: before anything that can fail, so every error and log line names it.
        request_id_middleware,
        # Error shaping: wraps everything below, so no middleware or route can answer with a
        # traceback or an HTML error page (a CSRF refusal is an OpenAI error too).
        error_middleware,
        # CSRF guard: before the session, so a rejected cross-site state change never loads
        # or rewrites a session cookie.
        csrf_middleware,
        # Session cookie: saves a session the handler changed into the handler's response.
        session_middleware(settings),
        # Security headers of static files: on the handler's own response, innermost.
        static_headers,
    ]
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[SETTINGS] = settings
    app.on_response_prepare.append(request_id_header)
    app[CIPHER] = KeyCipher(settings.openai_key_encryption_secret)
    app[MODELS] = ModelCatalog()
    app[REFUSALS] = Counter()
    app[RUN_GATE] = RunGate(settings.execute_max_concurrent, app[REFUSALS])
    app[CODEX_BIN] = find_codex_bin(settings.codex_bin) or ""
    if not app[CODEX_BIN]:
        _LOGGER.warning("No codex binary found (setting codexBin, ./.codex-cli or PATH)")
    if settings.needs_isolation:  # `codexpool serve` checked that it works on this machine
        app[ISOLATION] = isolation(settings, settings_file)
    # Lifetimes, in dependency order: database, usage writer, engine (+ limits, pool), the
    # image fetcher, then the background tasks that use them all.
    # With clusterSecret, the cluster node joins right after the engine: it leases this
    # node's share of the accounts before the refresher and the routes see the pool.
    cluster = [cluster_ctx] if settings.clustered else []
    app.cleanup_ctx.extend(
        [_store_ctx, _usage_ctx, _engine_ctx, *cluster, _image_fetcher_ctx, _background_ctx]
    )
    shutdown.setup(app)  # grace timer; before the routes that register interrupters
    sessions.setup(app)  # sign-in throttle + admin credentials context
    tool_turns.setup(app)  # parked tool-call turns; closed before the engine stops
    conversations.setup(app)  # conversation threads; released before the engine stops
    # Chat turns still running at the end of the grace end with an error chunk + [DONE].
    shutdown.add_interrupter(app, lambda a, message: a[ENGINE].interrupt_all(message))
    for module in route_modules():  # routes, and the lifetimes some of them own, in order
        module.setup(app)
    if settings.shares_state:
        app.cleanup_ctx.append(_change_feed_ctx)  # after the admin credentials' context
    return app


async def freeze_startup_objects(app: web.Application) -> None:
    """Move everything built at start-up out of the collector's reach (the server process
    appends this last to on_startup; tests that build many apps in one process do not).

    Those objects live for the whole run; leaving them in the oldest generation makes every
    full collection walk them all, a pause that lands on whichever stream is running.
    """
    gc.collect()
    gc.freeze()


__all__ = ["create_app"]
