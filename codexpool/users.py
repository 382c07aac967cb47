"""Portal users and endpoint keys: the plain async functions behind the CLI, portal and admin.

A user key runs on its owner's linked ChatGPT account; the single master key runs on the pool.
Rotation inserts the new key and revokes the old one in one transaction, so there is never a
moment with two live keys or none.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ApiError
from .key_limits import COLUMNS as KEY_LIMIT_COLUMNS
from .key_limits import NO_LIMITS, KeyLimits, Owner, OwnerUse
from .security import KeyCipher, key_digest, key_hint, mint_key
from .store import Row, Store

USERNAME_RE = re.compile(r"^[a-z0-9_.-]{3,32}$")
MIN_PASSWORD_LEN = 8
MAX_PASSWORD_LEN = 256
MAX_LABEL_LEN = 64

KeyKind = Literal["user", "master"]


@dataclass(frozen=True)
class KeyPrincipal:
    """Who an API key belongs to; `user_id` is None for the master key."""

    key_id: int
    kind: KeyKind
    user_id: int | None
    username: str | None
    limits: KeyLimits = NO_LIMITS

    @property
    def owner(self) -> Owner:
        """The key slot whose use is counted (survives rotation)."""
        return (self.kind, self.user_id)


@dataclass(frozen=True)
class User:
    """A portal user row."""

    id: int
    username: str
    created_at: float
    session_epoch: int
    pool_opt_in: bool
    disabled: bool


def normalize_username(raw: object) -> str:
    """Case-fold and validate a username, or raise a 400 naming the rule."""
    if not isinstance(raw, str):
        raise ApiError(400, "username must be a string", "invalid_username", param="username")
    name = raw.strip().casefold()
    if not USERNAME_RE.fullmatch(name):
        raise ApiError(
            400,
            "username must be 3-32 characters of a-z, 0-9, '_', '.' or '-'",
            "invalid_username",
            param="username",
        )
    return name


def validate_password(raw: object) -> str:
    """Return the password if it is acceptable, or raise a 400."""
    if not isinstance(raw, str) or not MIN_PASSWORD_LEN <= len(raw) <= MAX_PASSWORD_LEN:
        raise ApiError(
            400,
            f"password must be a string of {MIN_PASSWORD_LEN}-{MAX_PASSWORD_LEN} characters",
            "invalid_password",
            param="password",
        )
    return raw


def validate_label(raw: object) -> str:
    """Return a key label (optional, short, printable) or raise a 400."""
    if raw is None:
        return ""
    if not isinstance(raw, str) or len(raw) > MAX_LABEL_LEN or not raw.isprintable():
        raise ApiError(
            400,
            f"label must be printable text of at most {MAX_LABEL_LEN} characters",
            param="label",
        )
    return raw.strip()


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        created_at=row["created_at"],
        session_epoch=row["session_epoch"],
        pool_opt_in=bool(row["pool_opt_in"]),
        disabled=bool(row["disabled"]),
    )


async def create_user(store: Store, username: str, password_hash: str | None) -> User:
    """Insert a user (username already normalized) or raise 409 if the name is taken."""
    if await store.fetchone("SELECT 1 FROM users WHERE username = ?", (username,)):
        raise ApiError(409, f"username {username!r} is taken", "username_taken", param="username")
    now = time.time()
    user_id = await store.insert(
        "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
        (username, password_hash, now),
    )
    return User(user_id, username, now, 0, True, False)


async def get_user(store: Store, username: str) -> User | None:
    """Return the user with this (normalized) name, or None."""
    row = await store.fetchone("SELECT * FROM users WHERE username = ?", (username,))
    return _user(row) if row else None


async def get_user_by_id(store: Store, user_id: int) -> User | None:
    """Return the user with this id, or None."""
    row = await store.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))
    return _user(row) if row else None


async def get_password_hash(store: Store, username: str) -> tuple[User, str | None] | None:
    """Return the user and their password hash for a sign-in check."""
    row = await store.fetchone("SELECT * FROM users WHERE username = ?", (username,))
    return (_user(row), row["password_hash"]) if row else None


async def list_users(store: Store) -> list[User]:
    """Return all users, oldest first."""
    return [_user(r) for r in await store.fetchall("SELECT * FROM users ORDER BY id")]


async def delete_user(store: Store, user_id: int) -> bool:
    """Delete a user with their keys and cached limits; tell whether they existed.

    A tombstone keeps the id and name: the request log still names the id, and ids are never
    handed out again (AUTOINCREMENT), so those rows stay the deleted user's.
    """
    async with store.transaction() as db:
        await db.execute(
            "INSERT INTO deleted_users (id, username, deleted_at) "
            "SELECT id, username, CAST(? AS DOUBLE PRECISION) FROM users WHERE id = ? "
            "ON CONFLICT (id) DO UPDATE SET username = excluded.username, "
            "deleted_at = excluded.deleted_at",
            (time.time(), user_id),
        )
        return await db.execute("DELETE FROM users WHERE id = ?", (user_id,)) > 0


async def bump_session_epoch(store: Store, user_id: int) -> None:
    """Invalidate every portal session of this user."""
    await store.execute(
        "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?", (user_id,)
    )


async def set_pool_opt_in(store: Store, user_id: int, opt_in: bool) -> None:
    """Record whether this user's account may serve master-key requests."""
    await store.execute("UPDATE users SET pool_opt_in = ? WHERE id = ?", (int(opt_in), user_id))


async def rotate_key(
    store: Store,
    cipher: KeyCipher,
    *,
    kind: KeyKind,
    prefix: str,
    user_id: int | None = None,
    label: str = "",
) -> str:
    """Mint a new key, revoke the previous live one atomically, and return the plain key once."""
    if (kind == "user") == (user_id is None):
        raise ValueError("user keys need a user id; the master key has none")
    key = mint_key(prefix)
    now = time.time()
    live = "kind = ? AND user_id IS ? AND revoked_at IS NULL"
    async with store.transaction() as db:
        # The new key inherits the old one's limits: a rotation never lifts a cap.
        old = await db.fetchone(
            f"SELECT {KEY_LIMIT_COLUMNS} FROM api_keys WHERE {live}", (kind, user_id)
        )
        limits = KeyLimits.from_row(old) if old is not None else NO_LIMITS
        await db.execute(f"UPDATE api_keys SET revoked_at = ? WHERE {live}", (now, kind, user_id))
        await db.execute(
            "INSERT INTO api_keys (user_id, kind, label, digest, ciphertext, hint, created_at, "
            f"{KEY_LIMIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user_id,
                kind,
                label,
                key_digest(key),
                cipher.encrypt(key),
                key_hint(key, prefix),
                now,
                *limits.as_params(),
            ),
        )
    return key


async def set_key_limits(store: Store, owner: Owner, limits: KeyLimits) -> bool:
    """Replace the limits of an owner's live key; False when the owner has no live key."""
    assigns = ", ".join(f"{c.strip()} = ?" for c in KEY_LIMIT_COLUMNS.split(","))
    changed = await store.execute(
        f"UPDATE api_keys SET {assigns} WHERE kind = ? AND user_id IS ? AND revoked_at IS NULL",
        (*limits.as_params(), *owner),
    )
    return changed > 0


async def lookup_key(store: Store, key: str) -> KeyPrincipal | None:
    """Return the live key's principal, or None for an unknown, revoked or orphaned key."""
    return await lookup_digest(store, key_digest(key))


async def lookup_digest(store: Store, digest: str) -> KeyPrincipal | None:
    """Return the principal of the live key with this SHA-256 digest, or None."""
    row = await store.fetchone(
        f"SELECT k.id, k.kind, k.user_id, u.username, u.disabled, {KEY_LIMIT_COLUMNS} "
        "FROM api_keys k "
        "LEFT JOIN users u ON u.id = k.user_id "
        "WHERE k.digest = ? AND k.revoked_at IS NULL",
        (digest,),
    )
    if row is None:
        return None
    if row["kind"] == "user" and (row["username"] is None or row["disabled"]):
        return None
    return KeyPrincipal(
        row["id"], row["kind"], row["user_id"], row["username"], KeyLimits.from_row(row)
    )


async def live_key_row(
    store: Store, *, user_id: int | None, kind: KeyKind
) -> dict[str, Any] | None:
    """Return the live key's metadata (never the key) for a user or the master."""
    if kind == "master":
        row = await store.fetchone(
            "SELECT * FROM api_keys WHERE kind = 'master' AND revoked_at IS NULL"
        )
    else:
        row = await store.fetchone(
            "SELECT * FROM api_keys WHERE kind = 'user' AND user_id = ? AND revoked_at IS NULL",
            (user_id,),
        )
    if row is None:
        return None
    return {
        "id": row["id"],
        "label": row["label"],
        "hint": row["hint"],
        "created_at": row["created_at"],
        "last_used_at": row["last_used_at"],
        "ciphertext": row["ciphertext"],
        "limits": KeyLimits.from_row(row),
    }


def key_summary(key: Mapping[str, Any] | None, use: OwnerUse | None) -> dict[str, Any]:
    """Return what the panels show of a live key (never the key): the master key's summary on
    the admin page, and, `key`-prefixed (key_fields), each user's in the admin table and on
    the portal. `key` holds live_key_row's fields (label, hint, created_at, last_used_at,
    limits), None without a live key; `use` is the key slot's use today."""
    return {
        "exists": key is not None,
        "label": key["label"] if key else None,
        "hint": key["hint"] if key else None,
        "createdAt": key["created_at"] if key else None,
        "lastUsedAt": key["last_used_at"] if key else None,
        "limits": key["limits"].as_json() if key else None,
        "usageToday": use.as_json() if use is not None else None,
    }


def key_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """Return a key_summary as the flat members of a user object (`hasKey`, `keyHint`, ...)."""
    fields = {"hasKey": summary["exists"]}
    for name, value in summary.items():
        if name != "exists":
            fields["key" + name[0].upper() + name[1:]] = value
    return fields


async def reveal_key(store: Store, cipher: KeyCipher, user_id: int) -> str | None:
    """Return the user's live key in plain text (admin reveal), or None when there is none."""
    row = await live_key_row(store, user_id=user_id, kind="user")
    return cipher.decrypt(row["ciphertext"]) if row else None
