"""Where each account's Codex home lives and whether it is linked to a ChatGPT account."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .config import Settings


class LinkError(Exception):
    """An auth.json cannot be imported; the message says why."""


def codex_home(settings: Settings, user_id: int) -> Path:
    """Return the CODEX_HOME folder of a user's account (created on demand by callers)."""
    return settings.codex_homes / str(int(user_id))


# auth.json path -> (identity of the file version, linked?). Every user-key request asks
# whether its account is linked; a stat is far cheaper than reading and parsing the file, and
# any rewrite (link, unlink, Codex refreshing its tokens) changes the identity.
_LINKED_CACHE: dict[str, tuple[tuple[int, int, int], bool]] = {}
_LINKED_CACHE_MAX = 10_000


def is_linked(home: Path) -> bool:
    """Tell whether the home holds a ChatGPT login (auth.json with tokens or an API key)."""
    path = os.path.join(home, "auth.json")
    try:
        st = os.stat(path)
    except OSError:
        _LINKED_CACHE.pop(path, None)
        return False
    ident = (st.st_mtime_ns, st.st_size, st.st_ino)
    cached = _LINKED_CACHE.get(path)
    if cached is not None and cached[0] == ident:
        return cached[1]
    linked = _read_linked(path)
    if len(_LINKED_CACHE) >= _LINKED_CACHE_MAX:
        _LINKED_CACHE.clear()
    _LINKED_CACHE[path] = (ident, linked)
    return linked


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


def remove_home(home: Path) -> None:
    """Delete an account's Codex home (tokens, sessions, logs)."""
    shutil.rmtree(home, ignore_errors=True)
