"""Command line: serve, init, users, keys, account linking, password hashing and checks.

Admin commands open the database directly (no running server needed) so a first account can
be set up before the web panel exists or from a recovery shell.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import __version__, linking, users
from .config import (
    Settings,
    SettingsError,
    example_settings,
    load_settings,
    resolve_settings_path,
)
from .errors import ApiError
from .logsafe import EscapingFormatter
from .security import KeyCipher, hash_password, is_bcrypt_hash, random_secret
from .store import PRIVATE_UMASK, Store, StoreError, create_store, make_private

_LOGGER = logging.getLogger("codexpool")


def _fail(message: str) -> int:
    print(f"codexpool: {message}", file=sys.stderr)
    return 2


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(resolve_settings_path(args.settings))


def configure_logging(level: str) -> None:
    """Log one line per record to stdout (journald adds time and unit)."""
    handler = logging.StreamHandler(sys.stdout)
    # Client text (names, paths) reaches the log: one record must stay one line.
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # ours: codexpool.access
    logging.getLogger("aiosqlite").setLevel(logging.INFO)  # one debug line per SQL statement


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM."""
    settings = _settings(args)  # before importing the app: a bad setting is one line, fast

    from .app import create_app, freeze_startup_objects
    from .serving import serve
    from .shutdown import serve_shutdown_timeout

    configure_logging(settings.log_level)
    problem = _data_folder_problem(settings.data_path) or _sandbox_problem(settings)
    if problem:
        return _fail(problem)
    if not is_bcrypt_hash(settings.admin_password):
        _LOGGER.warning(
            "adminPassword is stored in plain text; `codexpool hash-password` makes a hash"
        )
    host = args.host or settings.host
    port = args.port or settings.port
    print(
        f"codexpool {__version__} on http://{host}:{port} "
        f"(panel /, portal /openai, API /api/openai/v1, health /api/health)",
        flush=True,
    )
    # handler_cancellation: a client that goes away cancels its handler, which interrupts the
    # Codex turn at once instead of letting it burn quota until the next write fails.
    app = create_app(settings, resolve_settings_path(args.settings))
    app.on_startup.append(freeze_startup_objects)  # last: after every context has started
    serve(  # web.run_app, plus the raised open-file limit and the connection cap
        app,
        host=host,
        port=port,
        loop=new_event_loop(),
        max_connections=settings.max_connections,
        handler_cancellation=True,
        access_log=None,
        # Past the grace period: the grace timer interrupts what still runs, and the handlers
        # need a moment to write their final error chunk before aiohttp cancels them.
        shutdown_timeout=serve_shutdown_timeout(
            args.shutdown_timeout
            if args.shutdown_timeout is not None
            else settings.shutdown_grace_seconds
        ),
    )
    return 0


def _data_folder_problem(data: Path) -> str | None:
    """Say in one line why the gateway cannot keep its state in `data` (None: it can)."""
    from .doctor import WRITABLE_FIX, unwritable_reason

    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the data folder {data}: {exc.strerror or exc}"
    reason = unwritable_reason(data)
    if reason is None:
        try:
            make_private(data)  # a folder made by a caller with umask 022 is 0755
        except OSError as exc:
            reason = f"cannot make it private: {exc.strerror or exc}"
    if reason is not None:
        return (
            f"the data folder {data} is not writable ({reason}); it holds the database and the "
            f"Codex homes: {WRITABLE_FIX}"
        )
    return None


def _sandbox_problem(settings: Settings) -> str | None:
    """Say in one line why model commands cannot be sandboxed here when a setting lets the
    model run them (None: they can, or none may); warn when codex's own sandbox will not
    nest inside ours."""
    from .app import isolation
    from .doctor import sandbox_problem

    if not settings.needs_isolation:
        return None
    sandbox = isolation(settings)
    problem = sandbox_problem(settings, sandbox)
    if problem is not None:
        return problem
    nested = sandbox.probe_nesting()
    if nested is not None:
        _LOGGER.warning("Every command the model runs will fail: %s", nested)
    else:
        _LOGGER.info("Model commands run in a bubblewrap sandbox (%s)", sandbox.bwrap)
    return None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return uvloop's event loop when it is installed (about half the CPU per streamed
    request: sockets and pipes are served in C), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def cmd_init(args: argparse.Namespace) -> int:
    """Write a settings.json with a hashed admin password and fresh random secrets."""
    path = resolve_settings_path(args.settings)
    if path.exists() and not args.force:
        return _fail(f"{path} exists; pass --force to overwrite it")
    password = args.admin_password or os.environ.get("ADMIN_PASSWORD") or ""
    generated = not password
    if generated:
        password = random_secret(12)
    if len(password) < 8 and not is_bcrypt_hash(password):
        return _fail("the admin password must have at least 8 characters")
    data: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "adminUsername": args.admin_username,
        "adminPassword": password if is_bcrypt_hash(password) else hash_password(password),
        "openaiApiKeyPrefix": args.api_key_prefix,
        "openaiMasterKeyPrefix": args.master_key_prefix,
        "openaiKeyEncryptionSecret": random_secret(32),
        "sessionSecret": random_secret(32),
    }
    if args.codex_bin:
        data["codexBin"] = args.codex_bin
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    load_settings(path)  # prove what we wrote is valid
    print(f"Wrote {path}")
    if generated:
        print(f"Admin sign-in: {args.admin_username} / {password}  (shown once; change it)")
    return 0


async def _with_store(settings: Settings, fn: Callable[[Store], Awaitable[int]]) -> int:
    store = create_store(settings)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


def cmd_user_add(args: argparse.Namespace) -> int:
    """Create a portal user from the shell."""
    settings = _settings(args)
    name = users.normalize_username(args.name)
    password = args.password
    if password is None and sys.stdin.isatty():
        password = getpass.getpass("Portal password (empty: no portal sign-in): ") or None
    if password is not None:
        users.validate_password(password)

    async def run(store: Store) -> int:
        await users.create_user(store, name, hash_password(password) if password else None)
        print(f"Created user {name}")
        return 0

    return asyncio.run(_with_store(settings, run))


def cmd_key_rotate(args: argparse.Namespace) -> int:
    """Mint a new key for a user (or the master key) and print it once."""
    settings = _settings(args)
    cipher = KeyCipher(settings.openai_key_encryption_secret)

    async def run(store: Store) -> int:
        if args.master and args.if_missing:
            if await users.live_key_row(store, user_id=None, kind="master") is not None:
                print("a master key exists already; kept it", file=sys.stderr)
                return 0
        if args.master:
            key = await users.rotate_key(
                store,
                cipher,
                kind="master",
                prefix=settings.openai_master_key_prefix,
                label=args.label or "master",
            )
        else:
            if not args.name:
                return _fail("name a user, or pass --master")
            user = await users.get_user(store, users.normalize_username(args.name))
            if user is None:
                return _fail(f"no user {args.name!r} (create it with `codexpool user add`)")
            key = await users.rotate_key(
                store,
                cipher,
                kind="user",
                prefix=settings.openai_api_key_prefix,
                user_id=user.id,
                label=args.label or "",
            )
        print(key)
        return 0

    return asyncio.run(_with_store(settings, run))


def cmd_link_import(args: argparse.Namespace) -> int:
    """Link a user's account from an existing Codex auth.json."""
    settings = _settings(args)

    async def run(store: Store) -> int:
        user = await users.get_user(store, users.normalize_username(args.name))
        if user is None:
            return _fail(f"no user {args.name!r} (create it with `codexpool user add`)")
        if settings.clustered:  # the database's copy is the login; its owner node writes it
            from .cluster import logins

            data = json.dumps(linking.read_auth_json(Path(args.auth_json)), indent=2)
            cipher = KeyCipher(settings.openai_key_encryption_secret)
            await logins.save(store, cipher, user.id, data.encode(), "cli")
            print(f"Linked {user.username} (stored in the cluster's database)")
            return 0
        home = linking.codex_home(settings, user.id)
        linking.import_auth_json(home, Path(args.auth_json))
        print(f"Linked {user.username}: {home / 'auth.json'}")
        return 0

    return asyncio.run(_with_store(settings, run))


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print a bcrypt hash for adminPassword."""
    password = args.password or getpass.getpass("Password: ")
    print(hash_password(password))
    return 0


def cmd_example_settings(args: argparse.Namespace) -> int:
    """Print settings.example.json."""
    print(json.dumps(example_settings(), indent=2))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate settings, data folder, codex binary and linked accounts; say what to fix."""
    from .doctor import Report, run_checks

    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"FAIL settings: {exc}")
        print("     fix: edit settings.json (see settings.example.json) or run `codexpool init`")
        return 1
    return run_checks(settings, Report())


def cmd_migrate_store(args: argparse.Namespace) -> int:
    """Copy the SQLite file into an empty PostgreSQL database (then set databaseUrl)."""
    from .store import POSTGRES_SCHEMES, SqliteStore, postgres_store
    from .store.copy import copy_sqlite_to_postgres

    if not args.to.startswith(POSTGRES_SCHEMES):
        return _fail("--to must be a postgresql:// URL")
    source_path = Path(args.source) if args.source else _settings(args).db_path
    if not source_path.is_file():
        return _fail(f"no SQLite database at {source_path}")

    async def copy() -> int:
        source = SqliteStore(source_path)
        target = postgres_store(args.to)
        await source.open()
        try:
            await target.open()
            try:
                print(f"Copying {source.describe()} to {target.describe()}")
                counts = await copy_sqlite_to_postgres(source, target)
            finally:
                await target.close()
        finally:
            await source.close()
        print(
            f'Copied {sum(counts.values())} rows in {len(counts)} tables. Set "databaseUrl" '
            "in settings.json to this URL and start the gateway; the SQLite file is unchanged."
        )
        return 0

    return asyncio.run(copy())


SETTINGS_HELP = "settings.json path (default: $CODEXPOOL_SETTINGS or ./data/settings.json)"


def _settings_option() -> argparse.ArgumentParser:
    """Return the parent parser that gives a (sub)command `--settings`, as users type it after
    the subcommand too (`codexpool serve --settings PATH`).

    Its default is SUPPRESS so that a subcommand without the option leaves the value parsed
    before it (`codexpool --settings PATH serve`) alone instead of resetting it to None.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--settings", default=argparse.SUPPRESS, help=SETTINGS_HELP)
    return common


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `codexpool` command."""
    parser = argparse.ArgumentParser(prog="codexpool", description=__doc__)
    parser.add_argument("--version", action="version", version=f"codexpool {__version__}")
    parser.add_argument("--settings", help=SETTINGS_HELP)
    common = [_settings_option()]
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway", parents=common)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--shutdown-timeout", type=float, help="grace seconds (default: shutdownGraceSeconds)"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "init", help="write settings.json with a hashed password and secrets", parents=common
    )
    p.add_argument("--force", action="store_true")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--admin-username", default="admin")
    p.add_argument("--admin-password", help="default: $ADMIN_PASSWORD or a random one")
    p.add_argument("--api-key-prefix", default="sk-cp-")
    p.add_argument("--master-key-prefix", default="sk-cpm-")
    p.add_argument("--codex-bin", help="codex binary to record as codexBin (default: auto)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("user", help="manage portal users", parents=common)
    usub = p.add_subparsers(dest="user_command", required=True)
    q = usub.add_parser("add", help="create a portal user", parents=common)
    q.add_argument("name")
    q.add_argument("--password")
    q.set_defaults(func=cmd_user_add)

    p = sub.add_parser("key", help="manage endpoint keys", parents=common)
    ksub = p.add_subparsers(dest="key_command", required=True)
    q = ksub.add_parser(
        "rotate", help="mint a new key (printed once), revoking the old one", parents=common
    )
    q.add_argument("name", nargs="?")
    q.add_argument("--master", action="store_true", help="rotate the admin master (pool) key")
    q.add_argument("--label")
    q.add_argument(
        "--if-missing",
        action="store_true",
        help="with --master: mint only when no master key exists (installers re-run safely)",
    )
    q.set_defaults(func=cmd_key_rotate)

    p = sub.add_parser("link", help="link accounts", parents=common)
    lsub = p.add_subparsers(dest="link_command", required=True)
    q = lsub.add_parser(
        "import", help="link a user from an existing Codex auth.json", parents=common
    )
    q.add_argument("name")
    q.add_argument("--auth-json", required=True)
    q.set_defaults(func=cmd_link_import)

    p = sub.add_parser(
        "hash-password", help="print a bcrypt hash for adminPassword", parents=common
    )
    p.add_argument("password", nargs="?")
    p.set_defaults(func=cmd_hash_password)

    p = sub.add_parser("example-settings", help="print settings.example.json", parents=common)
    p.set_defaults(func=cmd_example_settings)

    p = sub.add_parser(
        "check", help="check settings, data folder, codex binary and accounts", parents=common
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "migrate-store",
        help="copy the SQLite database into an empty PostgreSQL database (stop the gateway first)",
        parents=common,
    )
    p.add_argument("--to", required=True, metavar="postgresql://...", help="target database URL")
    p.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="SQLite file to copy (default: codexpool.sqlite3 in the settings' dataDir)",
    )
    p.set_defaults(func=cmd_migrate_store)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `codexpool` console script."""
    args = build_parser().parse_args(argv)
    # Everything codexpool writes (database, Codex homes, settings) is private to its user,
    # whatever umask the caller had (scripts/start.sh, a shell): systemd's UMask= is not
    # the only way the gateway starts.
    os.umask(PRIVATE_UMASK)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        return _fail(str(exc))
    except (StoreError, linking.LinkError) as exc:
        return _fail(str(exc))
    except ApiError as exc:
        return _fail(exc.message)
    except KeyboardInterrupt:
        return 130
