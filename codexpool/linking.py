"""Where each account's Codex home lives and whether it is linked to a ChatGPT account."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import Settings


class LinkError(Exception):
    """An auth.json cannot be imported; the message says why."""


def codex_home(settings: Settings, user_id: int) -> Path:
    """Return the CODEX_HOME folder of a user's account (created on demand by callers)."""
    return settings.codex_homes / str(int(user_id))


# auth.json path -> (identity of the file version, linked?, monotonic time of the stat).
# Every user-key request asks whether its account is linked; a stat is far cheaper than
# reading and parsing the file, and any rewrite (link, unlink, Codex refreshing its tokens)
# changes the identity. A "linked" answer is reused for LINKED_RECHECK_S without a stat (a stat
# costs ~10 us here); "not linked" is always checked again, so a new link counts at once, and
# this process's own unlinks call forget().
_LINKED_CACHE: dict[str, tuple[tuple[int, int, int], bool, float]] = {}
_LINKED_CACHE_MAX = 10_000
LINKED_RECHECK_S = 1.0


def is_linked(home: Path) -> bool:
    """Tell whether the home holds a ChatGPT login (auth.json with tokens or an API key)."""
    path = os.path.join(home, "auth.json")
    cached = _LINKED_CACHE.get(path)
    now = time.monotonic()
    if cached is not None and cached[1] and now - cached[2] < LINKED_RECHECK_S:
        return True
    try:
        st = os.stat(path)
    except OSError:
        _LINKED_CACHE.pop(path, None)
        return False
    ident = (st.st_mtime_ns, st.st_size, st.st_ino)
    if cached is not None and cached[0] == ident:
        linked = cached[1]
    else:
        linked = _read_linked(path)
    if len(_LINKED_CACHE) >= _LINKED_CACHE_MAX:
        _LINKED_CACHE.clear()
    _LINKED_CACHE[path] = (ident, linked, now)
    return linked


def forget(home: Path) -> None:
    """Drop what is_linked remembers of a home (call after removing its login)."""
    _LINKED_CACHE.pop(os.path.join(home, "auth.json"), None)


def _read_linked(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    tokens = data.get("tokens")
    return bool(
        (isinstance(tokens, dict) and tokens.get("access_token")) or data.get("OPENAI_API_KEY")
    )


def import_auth_json(home: Path, source: Path) -> None:
    """Install an existing Codex auth.json (e.g. copied from a laptop) into an account home."""
    data = read_auth_json(source)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".auth.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, home / "auth.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_auth_json(source: Path) -> dict[str, Any]:
    """Return a Codex ChatGPT auth.json's content, or raise LinkError saying why it is not."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LinkError(f"cannot read {source} as JSON: {exc}") from exc
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if (
        not isinstance(tokens, dict)
        or not tokens.get("access_token")
        or not tokens.get("refresh_token")
    ):
        raise LinkError(f"{source} is not a Codex ChatGPT auth.json (no tokens)")
    auth: dict[str, Any] = data  # a dict: it holds `tokens`
    return auth


def remove_home(home: Path) -> None:
    """Delete an account's Codex home (tokens, sessions, logs)."""
    shutil.rmtree(home, ignore_errors=True)
    forget(home)
