"""Each account's Codex login (auth.json) kept in the database, encrypted: the source of truth
when several nodes share one database.

Only the node that holds an account's lease (leases.py) writes the file into its local Codex
home (`materialize`); codex refreshes its tokens in that file, and the owner writes every
change back (`save`) so the next owner starts from the newest refresh token: a refresh token
is single-use, and two nodes holding two copies would lock the account out.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..security import KeyCipher
from ..store import Store


@dataclass(frozen=True)
class StoredLogin:
    """One account's login as the database holds it (plain text after decryption)."""

    user_id: int
    data: bytes
    digest: str


def digest_of(data: bytes) -> str:
    """Return the SHA-256 hex digest that tells two versions of an auth.json apart."""
    return hashlib.sha256(data).hexdigest()


def read_file(home: Path) -> bytes | None:
    """Return the bytes of a home's auth.json, or None when it has none."""
    try:
        return (home / "auth.json").read_bytes()
    except OSError:
        return None


def is_login(data: bytes) -> bool:
    """Tell whether these bytes are an auth.json holding a login (tokens or an API key)."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return False
    tokens = parsed.get("tokens")
    return bool(
        (isinstance(tokens, dict) and tokens.get("access_token")) or parsed.get("OPENAI_API_KEY")
    )


def write_file(home: Path, data: bytes) -> None:
    """Write auth.json into a home atomically, private to this user (0600 in a 0700 folder)."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".auth.", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, home / "auth.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def save(store: Store, cipher: KeyCipher, user_id: int, data: bytes, node_id: str) -> str:
    """Store (insert or replace) an account's login; return its digest."""
    digest = digest_of(data)
    await store.execute(
        "INSERT INTO account_logins (user_id, ciphertext, digest, updated_at, updated_by) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
        "ciphertext = excluded.ciphertext, digest = excluded.digest, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (user_id, cipher.encrypt(data.decode("utf-8")), digest, time.time(), node_id),
        bookkeeping=True,
    )
    return digest


async def save_if_owner(
    store: Store, cipher: KeyCipher, user_id: int, data: bytes, node_id: str
) -> bool:
    """Write back a login codex changed, only while this node still owns the account (a node
    that lost its lease must not overwrite the new owner's newer tokens); tell if it did."""
    changed = await store.execute(
        "UPDATE account_logins SET ciphertext = ?, digest = ?, updated_at = ?, updated_by = ? "
        "WHERE user_id = ? AND EXISTS (SELECT 1 FROM account_leases l "
        "WHERE l.user_id = ? AND l.node_id = ?)",
        (
            cipher.encrypt(data.decode("utf-8")),
            digest_of(data),
            time.time(),
            node_id,
            user_id,
            user_id,
            node_id,
        ),
        bookkeeping=True,
    )
    return changed > 0


async def load(store: Store, cipher: KeyCipher, user_id: int) -> StoredLogin | None:
    """Return an account's stored login, or None (never linked, unlinked, or undecryptable)."""
    row = await store.fetchone(
        "SELECT ciphertext, digest FROM account_logins WHERE user_id = ?", (user_id,)
    )
    if row is None:
        return None
    plain = cipher.decrypt(row["ciphertext"])
    if plain is None:
        return None
    return StoredLogin(user_id, plain.encode("utf-8"), row["digest"])


async def digests(store: Store) -> dict[int, str]:
    """Return every stored login's digest by account (what each owner should hold)."""
    rows = await store.fetchall("SELECT user_id, digest FROM account_logins")
    return {int(r["user_id"]): str(r["digest"]) for r in rows}


async def delete(store: Store, user_id: int) -> bool:
    """Remove an account's stored login (unlink); tell whether there was one."""
    return await store.execute("DELETE FROM account_logins WHERE user_id = ?", (user_id,)) > 0
