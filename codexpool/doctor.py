"""`codexpool check`: a doctor that finds what would stop the gateway from serving, and says how
to fix each thing.

It runs the same checks an operator would by hand (settings, data folder, the codex binary,
the database and which backend it is, each linked account's `codex login status`) so an install can be verified before, or without,
starting the server. Every check prints one `ok`/`FAIL`/`warn` line; a FAIL makes the exit code 1.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import linking, users
from .codex.isolation import Isolation, gateway_isolation
from .codex.process import child_env
from .config import Settings, find_codex_bin
from .store import StoreError, create_store

LOGIN_STATUS_TIMEOUT_S = 20.0


@dataclass
class Report:
    """Collects check results and prints them as they come."""

    out: Callable[[str], None] = print
    failures: int = 0

    def ok(self, what: str) -> None:
        """Record a passed check."""
        self.out(f"ok   {what}")

    def warn(self, what: str) -> None:
        """Record something worth knowing that does not stop the gateway."""
        self.out(f"warn {what}")

    def fail(self, what: str, fix: str) -> None:
        """Record a problem and how to fix it."""
        self.failures += 1
        self.out(f"FAIL {what}\n     fix: {fix}")


WRITABLE_FIX = "give the user that runs codexpool write access (chown it to that user)"


def unwritable_reason(folder: Path) -> str | None:
    """Return why no file can be created in `folder` (None: one can).

    A real write, not an access() check: a read-only mount, a full disk or an immutable folder
    all fail here, even for root.
    """
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".check-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_data_folder(settings: Settings, report: Report) -> bool:
    """Check that the data folder exists and a file can really be written into it."""
    data = settings.data_path
    if not data.is_dir():
        report.fail(f"data folder {data} does not exist", f"mkdir -p {data} (or run install.sh)")
        return False
    reason = unwritable_reason(data)
    if reason is not None:
        report.fail(f"data folder {data} is not writable: {reason}", WRITABLE_FIX)
        return False
    report.ok(f"data folder {data}")
    return True


def check_codex(settings: Settings, report: Report) -> str | None:
    """Check that a codex binary is found and `codex --version` runs; return its path."""
    codex = find_codex_bin(settings.codex_bin)
    if not codex:
        where = f"codexBin {settings.codex_bin!r}" if settings.codex_bin else "./.codex-cli, PATH"
        report.fail(
            f"codex binary not found ({where})",
            "run ./install.sh (installs @openai/codex into .codex-cli) or set codexBin",
        )
        return None
    try:
        proc = subprocess.run(
            [codex, "--version"],
            capture_output=True,
            text=True,
            timeout=LOGIN_STATUS_TIMEOUT_S,
            env=child_env(settings.data_path),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.fail(f"codex binary {codex} does not run: {exc}", "reinstall it: ./install.sh")
        return None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        report.fail(
            f"`{codex} --version` exited {proc.returncode}: {tail[0]}",
            "reinstall it: ./install.sh",
        )
        return None
    report.ok(f"codex binary {codex} ({proc.stdout.strip()})")
    return codex


SANDBOX_FIX = (
    "apt-get install bubblewrap or set bwrapPath; where unprivileged user namespaces are off, "
    "turn them on (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces)"
)


def sandbox_users(settings: Settings) -> str:
    """Name the settings that let a model run commands (empty: none do)."""
    return " and ".join(
        name
        for name, on in (
            ("executeEnabled", settings.execute_enabled),
            ("chatLeanFeatures false", not settings.chat_lean_features),
        )
        if on
    )


def sandbox_problem(settings: Settings, sandbox: Isolation | None = None) -> str | None:
    """Return the one line that refuses start-up when a model may run commands but no
    sandbox can hide the gateway's data from it (None: fine)."""
    if not settings.needs_isolation:
        return None
    sandbox = sandbox or gateway_isolation(settings.bwrap_path, ())
    why = sandbox.problem()
    if why is None:
        return None
    who = sandbox_users(settings)
    return (
        f"{who} {'let' if ' and ' in who else 'lets'} the model run commands, which must "
        f"run in a sandbox that hides the gateway's data, but {why}. Fix: {SANDBOX_FIX}"
    )


def check_isolation(settings: Settings, report: Report) -> None:
    """Report whether model commands can be sandboxed here, and whether codex's own sandbox
    still works inside ours."""
    sandbox = gateway_isolation(settings.bwrap_path, ())
    why = sandbox.problem()
    if why is not None:
        if settings.needs_isolation:
            report.fail(
                f"sandbox for model commands ({sandbox_users(settings)}): {why}", SANDBOX_FIX
            )
        else:
            report.warn(
                f"sandbox for model commands unavailable ({why}): executeEnabled and "
                "chatLeanFeatures false would be refused at start"
            )
        return
    nested = sandbox.probe_nesting()
    if nested is not None:
        report.warn(
            f"sandbox for model commands: {sandbox.bwrap} works, but {nested}: codex's own "
            "sandbox cannot start inside it, so every command the model runs fails"
        )
        return
    report.ok(f"sandbox for model commands: {sandbox.bwrap} (codex's own sandbox nests inside)")


async def _open_database(settings: Settings) -> tuple[str, int, list[users.User]]:
    store = create_store(settings)
    await store.open()
    try:
        return store.describe(), await store.schema_version(), await users.list_users(store)
    finally:
        await store.close()


def check_database(settings: Settings, report: Report) -> list[users.User] | None:
    """Report which store backend is in use and whether it answers; return the users."""
    engine = "PostgreSQL (databaseUrl)" if settings.database_url else f"SQLite {settings.db_path}"
    try:
        where, version, everyone = asyncio.run(_open_database(settings))
    except (StoreError, OSError) as exc:
        fix = (
            "check that PostgreSQL runs and that databaseUrl names the right host, port, "
            "user, password and database"
            if settings.database_url
            else "check the data folder and its owner"
        )
        report.fail(f"database {engine} is not usable: {exc}", fix)
        return None
    report.ok(f"database: {where}, reachable, schema version {version}")
    return everyone


def check_accounts(
    settings: Settings, everyone: list[users.User], codex: str | None, report: Report
) -> None:
    """Run `codex login status` in every linked account's home and report the dead logins."""
    linked = [(u, linking.codex_home(settings, u.id)) for u in everyone]
    linked = [(u, home) for u, home in linked if linking.is_linked(home)]
    if not linked:
        report.warn(
            f"no linked accounts among {len(everyone)} users: link one on the portal (/openai)"
        )
        return
    if codex is None:
        report.warn(f"{len(linked)} linked accounts not checked (no working codex binary)")
        return
    for user, home in linked:
        try:
            proc = subprocess.run(
                [codex, "login", "status"],
                capture_output=True,
                text=True,
                timeout=LOGIN_STATUS_TIMEOUT_S,
                env=child_env(home),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            report.fail(f"account {user.username}: `codex login status` failed: {exc}", "retry")
            continue
        # codex prints the status on stderr (codex-protocol.md 3.4).
        status = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["?"]
        if proc.returncode == 0:
            report.ok(f"account {user.username}: {status[0]}")
        else:
            report.fail(
                f"account {user.username}: {status[0]} ({home})",
                f"{user.username} links again on the portal (/openai), or "
                f"`codexpool link import {user.username} --auth-json FILE`",
            )


def run_checks(settings: Settings, report: Report) -> int:
    """Run every check after settings loaded; return the process exit code."""
    report.ok("settings")
    if settings.admin_password and not settings.admin_password.startswith("$2"):
        report.warn("adminPassword is plain text: `codexpool hash-password` makes a hash")
    if settings.execute_enabled and not settings.execute_allowed_roots:
        report.warn("executeEnabled is on but executeAllowedRoots is empty: every cwd is refused")
    data_ok = check_data_folder(settings, report)
    codex = check_codex(settings, report)
    check_isolation(settings, report)
    everyone = check_database(settings, report) if data_ok or settings.database_url else None
    if data_ok and everyone is not None:
        check_accounts(settings, everyone, codex, report)
    if report.failures:
        report.out(f"{report.failures} problem(s) found")
        return 1
    report.out("all checks passed")
    return 0
