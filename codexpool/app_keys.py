"""Typed keys for the state the application shares (aiohttp AppKey / RequestKey).

Every key read by more than one module lives here. The value types are imported for type
checking only, so any module can import this one without an import cycle.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:  # types only: the modules these keys belong to import this one
    import aiohttp

    from .account_limits import LimitCache
    from .admin_auth import AdminAuth
    from .alerts import Alerts
    from .cluster.node import ClusterNode
    from .codex.engine import Engine
    from .codex.isolation import Isolation
    from .config import Settings
    from .conversations import Conversations
    from .device_login import DeviceLogins
    from .execrun import Executions
    from .key_cache import KeyCache
    from .key_limits import KeyQuotas
    from .login_throttle import LoginThrottle
    from .observe import Metrics
    from .openai.image_fetch import ImageFetcher
    from .openai.models import ModelCatalog
    from .openai.tool_turns import HeldTurns
    from .pool import Pool
    from .run_gate import RunGate
    from .security import KeyCipher
    from .store import Store
    from .usage import UsageRecorder
    from .users import KeyPrincipal


SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
CIPHER: web.AppKey[KeyCipher] = web.AppKey("cipher")
ENGINE: web.AppKey[Engine] = web.AppKey("engine")
POOL: web.AppKey[Pool] = web.AppKey("pool")
LIMITS: web.AppKey[LimitCache] = web.AppKey("limits")
USAGE: web.AppKey[UsageRecorder] = web.AppKey("usage")
KEY_QUOTAS: web.AppKey[KeyQuotas] = web.AppKey("key_quotas")
KEY_CACHE: web.AppKey[KeyCache] = web.AppKey("key_cache")
MODELS: web.AppKey[ModelCatalog] = web.AppKey("models")
CODEX_BIN: web.AppKey[str] = web.AppKey("codex_bin")
ADMIN_AUTH: web.AppKey[AdminAuth] = web.AppKey("admin_auth")
THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("throttle")
DEVICE_LOGINS: web.AppKey[DeviceLogins] = web.AppKey("device_logins")
IMAGE_FETCHER: web.AppKey[ImageFetcher] = web.AppKey("image_fetcher")
RUN_GATE: web.AppKey[RunGate] = web.AppKey("run_gate")
# Requests and connections refused by a resource bound, by reason (exported on /metrics).
REFUSALS: web.AppKey[Counter[str]] = web.AppKey("refusals")
ALERTS: web.AppKey[Alerts] = web.AppKey("alerts")
# The sandbox of codex processes whose model can run commands; absent when none may (lean chat,
# execute off).
ISOLATION: web.AppKey[Isolation] = web.AppKey("isolation")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
CONVERSATIONS: web.AppKey[Conversations] = web.AppKey("conversations")
HELD_TURNS: web.AppKey[HeldTurns] = web.AppKey("held_turns")
EXECUTIONS: web.AppKey[Executions] = web.AppKey("executions")
# This node's cluster membership and the client session of forwarded requests; absent on a
# single node (no clusterSecret).
CLUSTER: web.AppKey[ClusterNode] = web.AppKey("cluster")
CLUSTER_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("cluster_session")

PRINCIPAL: web.RequestKey[KeyPrincipal] = web.RequestKey("principal")
# This request's id (request_id.py): in error bodies, log lines and usage rows.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
