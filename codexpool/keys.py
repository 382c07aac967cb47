"""Typed keys for the state the application shares (aiohttp AppKey / RequestKey)."""

from __future__ import annotations

from collections import Counter

import aiohttp
from aiohttp import web

from .accounts import KeyPrincipal
from .admin_auth import AdminAuth
from .alerts import Alerts
from .cluster.node import ClusterNode
from .codex.engine import Engine
from .codex.isolation import Isolation
from .config import Settings
from .device_login import DeviceLogins
from .image_fetch import ImageFetcher
from .key_cache import KeyCache
from .key_limits import KeyQuotas
from .limits import LimitCache
from .models import ModelCatalog
from .pool import Pool
from .run_gate import RunGate
from .security import KeyCipher
from .store import Store
from .throttle import LoginThrottle
from .usage import UsageRecorder

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
CIPHER = web.AppKey("cipher", KeyCipher)
ENGINE = web.AppKey("engine", Engine)
POOL = web.AppKey("pool", Pool)
LIMITS = web.AppKey("limits", LimitCache)
USAGE = web.AppKey("usage", UsageRecorder)
KEY_QUOTAS = web.AppKey("key_quotas", KeyQuotas)
KEY_CACHE = web.AppKey("key_cache", KeyCache)
MODELS = web.AppKey("models", ModelCatalog)
CODEX_BIN = web.AppKey("codex_bin", str)
ADMIN_AUTH = web.AppKey("admin_auth", AdminAuth)
THROTTLE = web.AppKey("throttle", LoginThrottle)
DEVICE_LOGINS = web.AppKey("device_logins", DeviceLogins)
IMAGE_FETCHER = web.AppKey("image_fetcher", ImageFetcher)
RUN_GATE = web.AppKey("run_gate", RunGate)
# Requests and connections refused by a resource bound, by reason (exported on /metrics).
REFUSALS = web.AppKey("refusals", Counter)
ALERTS = web.AppKey("alerts", Alerts)
# The sandbox of codex processes whose model can run commands; absent when none may (lean chat,
# execute off).
ISOLATION = web.AppKey("isolation", Isolation)
# This node's cluster membership and the client session of forwarded requests; absent on a
# single node (no clusterSecret).
CLUSTER = web.AppKey("cluster", ClusterNode)
CLUSTER_SESSION = web.AppKey("cluster_session", aiohttp.ClientSession)

PRINCIPAL = web.RequestKey("principal", KeyPrincipal)
