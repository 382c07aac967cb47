"""Settings: one frozen, typed object built from `settings.json` plus environment overrides.

Every key is a field of `Settings` with a default and, in its metadata, its JSON name, help
line, environment variable and secrecy (`_opt`); `SETTINGS_FIELDS` maps JSON names to those
fields. `load_settings`, `example_settings` (what `codexpool example-settings` prints and
`settings.example.json` holds) and the tests all read them, so they can never drift apart.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_SETTINGS_NAME = "settings.json"
SETTINGS_ENV = "CODEXPOOL_SETTINGS"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where `.ci/run` and `install.sh` put the pinned npm package; the vendored binary is spawned
# directly because the node shim costs ~0.3 s and one extra process per start.
LOCAL_CODEX_DIR = PROJECT_ROOT / ".codex-cli"


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line naming it."""


def _opt(key: str, help: str, env: str | None = None, secret: bool = False) -> dict[str, Any]:
    return {"key": key, "help": help, "env": env, "secret": secret}


@dataclass(frozen=True)
class Settings:
    """The validated settings the whole app reads; field metadata maps them to JSON keys."""

    host: str = field(default="0.0.0.0", metadata=_opt("host", "Address to listen on.", "HOST"))
    port: int = field(default=8080, metadata=_opt("port", "TCP port to listen on.", "PORT"))
    admin_username: str = field(
        default="admin",
        metadata=_opt("adminUsername", "Admin sign-in name for the panel.", "ADMIN_USERNAME"),
    )
    admin_password: str = field(
        default="",
        metadata=_opt(
            "adminPassword",
            "Admin password: a bcrypt hash ($2b$...) or a plain value hashed at start-up. Required.",
            "ADMIN_PASSWORD",
            secret=True,
        ),
    )
    openai_api_key_prefix: str = field(
        default="sk-cp-",
        metadata=_opt(
            "openaiApiKeyPrefix", "Prefix of personal endpoint keys.", "OPENAI_API_KEY_PREFIX"
        ),
    )
    openai_master_key_prefix: str = field(
        default="sk-cpm-",
        metadata=_opt(
            "openaiMasterKeyPrefix",
            "Prefix of the admin master (pool) key; must differ from the user key prefix.",
            "OPENAI_MASTER_KEY_PREFIX",
        ),
    )
    openai_key_encryption_secret: str = field(
        default="",
        metadata=_opt(
            "openaiKeyEncryptionSecret",
            "Secret (>= 32 characters) that encrypts stored keys so the admin can reveal them. "
            "Required; changing it makes existing keys unrevealable (they still work).",
            "OPENAI_KEY_ENCRYPTION_SECRET",
            secret=True,
        ),
    )
    session_secret: str = field(
        default="",
        metadata=_opt(
            "sessionSecret",
            "Secret (>= 32 characters) for the encrypted session cookies. Required.",
            "CODEXPOOL_SESSION_SECRET",
            secret=True,
        ),
    )
    data_dir: str = field(
        default="",
        metadata=_opt(
            "dataDir",
            "Runtime state folder (database, Codex homes). Default: the settings file's folder.",
            "CODEXPOOL_DATA_DIR",
        ),
    )
    codex_home_root: str = field(
        default="",
        metadata=_opt(
            "codexHomeRoot",
            "Base folder of the per-account CODEX_HOME folders. Default: <dataDir>/codex-homes.",
        ),
    )
    codex_bin: str = field(
        default="",
        metadata=_opt(
            "codexBin",
            "Path of the codex binary. Default: the project-local pinned install, else `codex` "
            "on PATH.",
            "CODEXPOOL_CODEX_BIN",
        ),
    )
    codex_config_overrides: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "codexConfigOverrides",
            "List of `key=value` strings passed as `-c` to every codex process (model provider, "
            "proxy settings).",
        ),
    )
    openai_codex_timeout_ms: int = field(
        default=300_000,
        metadata=_opt(
            "openaiCodexTimeoutMs",
            "Upper bound for one Codex turn; a request's `timeoutMs` can only lower it.",
        ),
    )
    openai_rate_limit_cache_ttl_ms: int = field(
        default=60_000,
        metadata=_opt(
            "openaiRateLimitCacheTtlMs", "How long a read of an account's Codex limits is reused."
        ),
    )
    max_turns_per_account: int = field(
        default=4,
        metadata=_opt(
            "maxTurnsPerAccount", "Concurrent chat turns one account runs; more wait in a queue."
        ),
    )
    max_queue_wait_ms: int = field(
        default=5_000,
        metadata=_opt(
            "maxQueueWaitMs",
            "How long a request waits for a free turn slot before a 429 `account_busy`.",
        ),
    )
    app_server_idle_seconds: int = field(
        default=900,
        metadata=_opt(
            "appServerIdleSeconds",
            "Stop an account's warm `codex app-server` after this idle time (counted once it "
            "keeps no conversation thread: see conversationIdleSeconds).",
        ),
    )
    app_server_recycle_mib: int = field(
        default=384,
        metadata=_opt(
            "appServerRecycleMib",
            "Replace an account's `codex app-server` once its memory (RSS, checked every 16 "
            "turns; Linux) reaches this many MiB (0: never). Codex 0.169.0 keeps every finished "
            "chat thread in memory (~1.5 MiB each); the new process starts beside the old one, "
            "which ends when its last turn does.",
        ),
    )
    stream_keepalive_ms: int = field(
        default=15000,
        metadata=_opt(
            "streamKeepAliveMs",
            "While a streamed answer waits for Codex longer than this (a long reasoning step), "
            "send an SSE comment line so proxies and clients with idle timeouts keep the "
            "connection open.",
        ),
    )
    chat_lean_features: bool = field(
        default=True,
        metadata=_opt(
            "chatLeanFeatures",
            "Turn off Codex agent features (plugins, apps, shell tools...) for chat turns: "
            "about 2x faster first token and fewer side requests.",
        ),
    )
    chat_instructions: str = field(
        default="client",
        metadata=_opt(
            "chatInstructions",
            "What a chat turn's model is told: 'client' sends only the client's system/developer "
            "messages (no Codex persona, skills or environment blocks; ~1.7 KB instead of ~29 KB "
            "per request); 'codex' wraps them in Codex's own agent instructions. An account "
            "whose backend refuses the client's instructions falls back to 'codex' until restart.",
        ),
    )
    chat_base_instructions: str = field(
        default="",
        metadata=_opt(
            "chatBaseInstructions",
            "Gateway-wide instructions for chat turns. With chatInstructions 'client' they come "
            "before the client's system messages; with 'codex' they replace Codex's persona "
            "(the client's messages follow as developer instructions). Empty: none.",
        ),
    )
    web_search: bool = field(
        default=False,
        metadata=_opt(
            "webSearch",
            "Serve a `web_search` tool offered on /v1/responses with Codex's own web search "
            "(run by the ChatGPT backend, on the account's quota). Off: the tool is dropped and "
            "the response names it (x-codexpool-dropped-tools header, `warnings`).",
        ),
    )
    max_body_bytes: int = field(
        default=8 * 1024 * 1024,
        metadata=_opt("maxBodyBytes", "Largest request body accepted (413 above it)."),
    )
    max_image_bytes: int = field(
        default=10 * 1024 * 1024,
        metadata=_opt(
            "maxImageBytes",
            "Largest image a chat request may send, inline as a data URL or by https URL (the "
            "gateway downloads those itself; 400 image_too_large above it).",
        ),
    )
    max_image_bytes_per_request: int = field(
        default=20 * 1024 * 1024,
        metadata=_opt(
            "maxImageBytesPerRequest",
            "Largest total size of all images of one chat request (400 images_too_large).",
        ),
    )
    image_fetch_timeout_ms: int = field(
        default=10_000,
        metadata=_opt(
            "imageFetchTimeoutMs",
            "How long the gateway may take to download one https image, redirects included "
            "(400 image_fetch_timeout after it).",
        ),
    )
    log_level: str = field(
        default="info",
        metadata=_opt("logLevel", "debug, info, warning or error.", "CODEXPOOL_LOG_LEVEL"),
    )
    trusted_proxy: bool = field(
        default=False,
        metadata=_opt(
            "trustedProxy",
            "Honour X-Forwarded-For/-Proto (set only behind your own TLS reverse proxy).",
        ),
    )
    execute_enabled: bool = field(
        default=False,
        metadata=_opt(
            "executeEnabled", "Enable the agentic /v1/codex/execute endpoint (off by default)."
        ),
    )
    execute_allowed_roots: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "executeAllowedRoots", "Folders inside which /v1/codex/execute may use a `cwd`."
        ),
    )
    execute_sandbox: str = field(
        default="workspace-write",
        metadata=_opt(
            "executeSandbox", "Codex sandbox for execute runs: read-only or workspace-write."
        ),
    )
    bwrap_path: str = field(
        default="",
        metadata=_opt(
            "bwrapPath",
            "Path of the bubblewrap binary (Debian package `bubblewrap`) that sandboxes the codex "
            "processes whose model can run commands (executeEnabled, chatLeanFeatures false) so "
            "they cannot read the gateway's data. Default: `bwrap` on PATH.",
        ),
    )
    shutdown_grace_seconds: int = field(
        default=20,
        metadata=_opt(
            "shutdownGraceSeconds",
            "On SIGTERM, how long running requests and streams may finish before they are "
            "interrupted with a final error chunk (keep below systemd's TimeoutStopSec).",
        ),
    )
    database_url: str = field(
        default="",
        metadata=_opt(
            "databaseUrl",
            "Where the data lives. Empty: the SQLite file in dataDir (one machine). "
            "postgresql://user:password@host:5432/db: a PostgreSQL database several nodes "
            "share (needs the codexpool[postgres] extra; see `codexpool migrate-store`).",
            "CODEXPOOL_DATABASE_URL",  # prefixed: a bare DATABASE_URL often belongs to another app
            secret=True,
        ),
    )
    database_busy_timeout_ms: int = field(
        default=5000,
        metadata=_opt(
            "databaseBusyTimeoutMs",
            "How long a database write waits while another process (a backup, the CLI) holds "
            "the write lock; then admin writes answer 503 database_busy and usage rows retry.",
        ),
    )
    shared_state: bool = field(
        default=False,
        metadata=_opt(
            "sharedState",
            "Keep the state several gateway nodes on one database must agree on (per-key day "
            "counters and concurrency, account cooldowns, conversation threads, sign-in "
            "throttling, cache invalidation) in the database instead of this process's memory "
            "(docs/cluster-state.md). Always on with a PostgreSQL databaseUrl. Off: a single "
            "node keeps it in memory, as fast as before.",
        ),
    )
    slot_lease_seconds: int = field(
        default=30,
        metadata=_opt(
            "slotLeaseSeconds",
            "With sharedState: how long a key's concurrency slot held by a node that stopped "
            "renewing it (killed, cut off) still counts; live nodes renew theirs every third "
            "of it.",
        ),
    )
    usage_retention_days: int = field(
        default=90,
        metadata=_opt("usageRetentionDays", "Per-request usage rows older than this are pruned."),
    )
    metrics_token: str = field(
        default="",
        metadata=_opt(
            "metricsToken",
            "Bearer token that may read /metrics without an admin session; empty: admin only.",
            secret=True,
        ),
    )
    tool_turn_ttl_seconds: int = field(
        default=600,
        metadata=_opt(
            "toolTurnTtlSeconds",
            "How long a turn waits for the client's tool results after a function call; then "
            "it is closed and a late follow-up runs as a fresh turn.",
        ),
    )
    alert_webhook_url: str = field(
        default="",
        metadata=_opt(
            "alertWebhookUrl",
            "Where operator alerts are POSTed as JSON with a Slack/Discord-compatible `text` "
            "field (lost logins, quota thresholds, pool exhausted/recovered, app-server crash "
            "loops, a busy database); empty: alerts are only listed in the admin panel.",
            secret=True,
        ),
    )
    alert_quota_percent: int = field(
        default=90,
        metadata=_opt(
            "alertQuotaPercent",
            "Alert once per window when an account's 5-hour or weekly quota use reaches this "
            "percent (1-100).",
        ),
    )
    alert_database_busy_seconds: int = field(
        default=60,
        metadata=_opt(
            "alertDatabaseBusySeconds",
            "Alert when usage rows could not be written for this long (database locked or "
            "failing).",
        ),
    )
    alert_panel_url: str = field(
        default="",
        metadata=_opt(
            "alertPanelUrl",
            "The admin panel's address as people reach it (e.g. https://codex.example.com/), "
            "linked from alerts; empty: http://<host>:<port>/.",
        ),
    )
    conversation_idle_seconds: int = field(
        default=1800,
        metadata=_opt(
            "conversationIdleSeconds",
            "How long a conversation's thread is kept for its next request; an idle one is "
            "released and a later request injects its history into a new thread.",
        ),
    )
    max_conversations_per_account: int = field(
        default=200,
        metadata=_opt(
            "maxConversationsPerAccount",
            "How many conversation threads each account keeps for their next request (least "
            "recently used released first).",
        ),
    )
    execute_max_concurrent: int = field(
        default=2,
        metadata=_opt(
            "executeMaxConcurrent",
            "Most codex exec runs (/v1/codex/execute) at once in the gateway; each key runs one "
            "at a time. Further requests get 429 with Retry-After.",
        ),
    )
    max_parked_turns_per_key: int = field(
        default=8,
        metadata=_opt(
            "maxParkedTurnsPerKey",
            "Most turns one key may leave waiting for tool results; parking one more closes "
            "its oldest (a late follow-up then runs as a fresh turn).",
        ),
    )
    max_device_logins: int = field(
        default=4,
        metadata=_opt(
            "maxDeviceLogins",
            "Most device-login flows (codex login processes) at once in the gateway; one per "
            "user. Further starts get 429 with Retry-After.",
        ),
    )
    unlinked_user_ttl_hours: int = field(
        default=72,
        metadata=_opt(
            "unlinkedUserTtlHours",
            "A portal user who never linked an account, never had a key and has not signed in "
            "for this long is removed (0: never).",
        ),
    )
    stream_write_timeout_ms: int = field(
        default=30_000,
        metadata=_opt(
            "streamWriteTimeoutMs",
            "A streamed answer whose client does not take a write within this ends: the turn "
            "is interrupted and its slot freed.",
        ),
    )
    max_connections: int = field(
        default=4096,
        metadata=_opt(
            "maxConnections",
            "Most open client connections; further ones are closed at once (the open-file "
            "limit is raised to its hard limit at start).",
        ),
    )
    cluster_secret: str = field(
        default="",
        metadata=_opt(
            "clusterSecret",
            "Shared secret of the gateway nodes on one database (at least 32 characters); "
            "setting it turns cluster mode on: accounts are leased to one node at a time and "
            "requests are forwarded to the owner. Empty: a single node.",
            "CODEXPOOL_CLUSTER_SECRET",
            secret=True,
        ),
    )
    node_url: str = field(
        default="",
        metadata=_opt(
            "nodeUrl",
            "Where the other nodes reach this one (cluster mode). Default: http://<host>:<port>, "
            "with this machine's name when host is 0.0.0.0.",
            "CODEXPOOL_NODE_URL",
        ),
    )
    node_id: str = field(
        default="",
        metadata=_opt(
            "nodeId",
            "This node's name in the cluster, unique per node. Default: <host name>:<port>.",
            "CODEXPOOL_NODE_ID",
        ),
    )
    cluster_lease_seconds: int = field(
        default=15,
        metadata=_opt(
            "clusterLeaseSeconds",
            "How long an account's lease lasts without renewal (renewed every fifth of it); "
            "a dead node's accounts move after this plus half of it.",
        ),
    )
    testing_login_issuer: str = field(
        default="",
        metadata=_opt(
            "testingLoginIssuer",
            "TEST ONLY: OAuth issuer URL for device login against a fake. Never set in production.",
        ),
    )

    testing_refresh_token_url: str = field(
        default="",
        metadata=_opt(
            "testingRefreshTokenUrl",
            "TEST ONLY: where codex app-servers refresh their tokens (a fake's /oauth/token). "
            "Never set in production.",
        ),
    )
    testing_image_fetch_loopback: bool = field(
        default=False,
        metadata=_opt(
            "testingImageFetchLoopback",
            "TEST ONLY: let image downloads reach loopback addresses (the tests' image server). "
            "Never set in production.",
        ),
    )

    # --- derived paths -------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        """Return the data folder as a path."""
        return Path(self.data_dir)

    @property
    def db_path(self) -> Path:
        """Return the SQLite file path."""
        return self.data_path / "codexpool.sqlite3"

    @property
    def shares_state(self) -> bool:
        """Tell whether shared state lives in the database (several nodes on one database):
        asked for, or implied by a PostgreSQL databaseUrl (the engine for several nodes) or by
        cluster mode (clusterSecret)."""
        return self.shared_state or bool(self.database_url) or bool(self.cluster_secret)

    @property
    def codex_state_path(self) -> Path:
        """Return the folder of the codex processes' private SQLite homes (codex/state_dir.py)."""
        return self.data_path / "codex-state"

    @property
    def needs_isolation(self) -> bool:
        """Tell whether a model may run commands: then codex runs in a sandbox (isolation.py)."""
        return self.execute_enabled or not self.chat_lean_features

    @property
    def clustered(self) -> bool:
        """Tell whether this node shares its database with others (clusterSecret is set)."""
        return bool(self.cluster_secret)

    @property
    def node_name(self) -> str:
        """Return this node's id in the cluster (nodeId, else host name and port)."""
        return self.node_id or f"{socket.gethostname()}:{self.port}"

    @property
    def node_address(self) -> str:
        """Return the URL other nodes reach this one at (nodeUrl, else host and port)."""
        if self.node_url:
            return self.node_url.rstrip("/")
        host = self.host if self.host not in ("", "0.0.0.0", "::") else socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def codex_homes(self) -> Path:
        """Return the base folder of per-account Codex homes."""
        return (
            Path(self.codex_home_root) if self.codex_home_root else self.data_path / "codex-homes"
        )

    def public_dict(self) -> dict[str, Any]:
        """Return the settings as JSON keys with secrets masked, for `codexpool check`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                value = "***"
            out[f.metadata["key"]] = list(value) if isinstance(value, tuple) else value
        return out


SETTINGS_FIELDS = {f.metadata["key"]: f for f in fields(Settings)}


def _coerce(key: str, expected: str, value: Any) -> Any:
    """Convert a JSON or environment value to the field's type, or name the key in an error."""
    if expected == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        }:
            return value.lower() in {"1", "true", "yes", "on"}
        raise SettingsError(f"setting {key!r} must be true or false, got {value!r}")
    if expected == "int":
        if isinstance(value, bool):
            raise SettingsError(f"setting {key!r} must be a whole number, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        raise SettingsError(f"setting {key!r} must be a whole number, got {value!r}")
    if expected == "tuple[str, ...]":
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise SettingsError(f"setting {key!r} must be a list of strings")
    if not isinstance(value, str):
        raise SettingsError(f"setting {key!r} must be a string, got {type(value).__name__}")
    return value


def _validate(s: Settings) -> None:
    """Reject values that would only fail later, with one line naming the setting."""
    if not 0 < s.port < 65536:
        raise SettingsError(f"setting 'port' must be 1-65535, got {s.port}")
    if not s.admin_username.strip():
        raise SettingsError("setting 'adminUsername' is empty")
    if not s.admin_password:
        raise SettingsError(
            "setting 'adminPassword' is missing (run `codexpool init` or set ADMIN_PASSWORD)"
        )
    for key, value in (
        ("openaiKeyEncryptionSecret", s.openai_key_encryption_secret),
        ("sessionSecret", s.session_secret),
    ):
        if len(value) < 32:
            raise SettingsError(
                f"setting {key!r} must be at least 32 characters (run `codexpool init`)"
            )
    if not s.openai_api_key_prefix or not s.openai_master_key_prefix:
        raise SettingsError("setting 'openaiApiKeyPrefix'/'openaiMasterKeyPrefix' is empty")
    if s.openai_api_key_prefix == s.openai_master_key_prefix:
        raise SettingsError("setting 'openaiMasterKeyPrefix' must differ from 'openaiApiKeyPrefix'")
    for key, number in (
        ("openaiCodexTimeoutMs", s.openai_codex_timeout_ms),
        ("openaiRateLimitCacheTtlMs", s.openai_rate_limit_cache_ttl_ms),
        ("maxTurnsPerAccount", s.max_turns_per_account),
        ("maxBodyBytes", s.max_body_bytes),
        ("maxImageBytes", s.max_image_bytes),
        ("maxImageBytesPerRequest", s.max_image_bytes_per_request),
        ("imageFetchTimeoutMs", s.image_fetch_timeout_ms),
        ("appServerIdleSeconds", s.app_server_idle_seconds),
        ("usageRetentionDays", s.usage_retention_days),
        ("databaseBusyTimeoutMs", s.database_busy_timeout_ms),
        ("toolTurnTtlSeconds", s.tool_turn_ttl_seconds),
        ("conversationIdleSeconds", s.conversation_idle_seconds),
        ("maxConversationsPerAccount", s.max_conversations_per_account),
        ("shutdownGraceSeconds", s.shutdown_grace_seconds),
        ("streamKeepAliveMs", s.stream_keepalive_ms),
        ("executeMaxConcurrent", s.execute_max_concurrent),
        ("maxParkedTurnsPerKey", s.max_parked_turns_per_key),
        ("maxDeviceLogins", s.max_device_logins),
        ("streamWriteTimeoutMs", s.stream_write_timeout_ms),
        ("maxConnections", s.max_connections),
        ("clusterLeaseSeconds", s.cluster_lease_seconds),
        ("slotLeaseSeconds", s.slot_lease_seconds),
    ):
        if number <= 0:
            raise SettingsError(f"setting {key!r} must be positive, got {number}")
    if not 1 <= s.alert_quota_percent <= 100:
        raise SettingsError("setting 'alertQuotaPercent' must be 1-100")
    if s.database_url and not s.database_url.startswith(("postgresql://", "postgres://")):
        raise SettingsError("setting 'databaseUrl' must be empty or a postgresql:// URL")
    if s.alert_database_busy_seconds <= 0:
        raise SettingsError("setting 'alertDatabaseBusySeconds' must be positive")
    for key, url in (
        ("alertWebhookUrl", s.alert_webhook_url),
        ("alertPanelUrl", s.alert_panel_url),
    ):
        if url and not url.startswith(("http://", "https://")):
            raise SettingsError(f"setting {key!r} must be an http:// or https:// URL")
    if s.max_queue_wait_ms < 0:
        raise SettingsError("setting 'maxQueueWaitMs' must not be negative")
    if s.unlinked_user_ttl_hours < 0:
        raise SettingsError("setting 'unlinkedUserTtlHours' must not be negative")
    if s.app_server_recycle_mib < 0:
        raise SettingsError("setting 'appServerRecycleMib' must not be negative")
    if s.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise SettingsError(
            f"setting 'logLevel' must be debug/info/warning/error, got {s.log_level!r}"
        )
    if s.chat_instructions not in {"client", "codex"}:
        raise SettingsError(
            f"setting 'chatInstructions' must be client or codex, got {s.chat_instructions!r}"
        )
    if s.execute_sandbox not in {"read-only", "workspace-write"}:
        raise SettingsError("setting 'executeSandbox' must be read-only or workspace-write")
    if s.cluster_secret and len(s.cluster_secret) < 32:
        raise SettingsError("setting 'clusterSecret' must be at least 32 characters")
    if s.node_url and not s.node_url.startswith(("http://", "https://")):
        raise SettingsError("setting 'nodeUrl' must be an http:// or https:// URL")
    for item in s.codex_config_overrides:
        if "=" not in item:
            raise SettingsError(f"setting 'codexConfigOverrides' entry {item!r} is not key=value")


def find_codex_bin(configured: str = "") -> str | None:
    """Return the codex binary to run: the configured one, the pinned local one, or PATH's."""
    if configured:
        path = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        return str(Path(path).resolve()) if path else None
    vendored = sorted(LOCAL_CODEX_DIR.glob("node_modules/@openai/codex-*/vendor/*/bin/codex"))
    if vendored:
        return str(vendored[0])
    found = shutil.which("codex")
    return str(Path(found).resolve()) if found else None


def resolve_settings_path(cli_path: str | None, env: Mapping[str, str] | None = None) -> Path:
    """Pick the settings file: CLI flag, then $CODEXPOOL_SETTINGS, then ./data/settings.json."""
    env = os.environ if env is None else env
    raw = cli_path or env.get(SETTINGS_ENV) or str(Path("data") / DEFAULT_SETTINGS_NAME)
    return Path(raw).expanduser().resolve()


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings file, apply environment overrides, validate, and return Settings."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SettingsError(f"settings file {path} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise SettingsError(f"settings file {path} must hold a JSON object")
    elif not any(f.metadata["env"] and f.metadata["env"] in env for f in fields(Settings)):
        raise SettingsError(f"settings file {path} not found (run `codexpool init`)")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("_") or key.startswith("$"):
            continue  # comments in settings.example.json
        f = SETTINGS_FIELDS.get(key)
        if f is None:
            raise SettingsError(f"unknown setting {key!r} in {path}")
        values[f.name] = _coerce(key, str(f.type), value)
    for f in fields(Settings):
        name = f.metadata["env"]
        if name and env.get(name, "") != "":
            values[f.name] = _coerce(f.metadata["key"], str(f.type), env[name])
    values.setdefault("data_dir", str(path.parent))
    values["data_dir"] = str(Path(values["data_dir"]).expanduser().resolve())
    settings = Settings(**values)
    _validate(settings)
    return settings


def example_settings() -> dict[str, Any]:
    """Return settings.example.json's content: every key with its default and help line."""
    doc: dict[str, Any] = {"_comment": "Every codexpool setting, its default and what it does."}
    for f in fields(Settings):
        default = f.default
        doc[f"_{f.metadata['key']}"] = f.metadata["help"] + (
            f" Env: {f.metadata['env']}." if f.metadata["env"] else ""
        )
        doc[f.metadata["key"]] = list(default) if isinstance(default, tuple) else default
    return doc
