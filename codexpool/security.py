"""Secrets: password hashing, key minting, key digests and reversible key encryption.

Keys are looked up by SHA-256 digest (fast, constant work per request) and stored a second time
as Fernet ciphertext so the admin can reveal them; the plain key is never stored or logged.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import string

import bcrypt
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

BASE62 = string.ascii_letters + string.digits
KEY_RANDOM_CHARS = 48  # ~285 bits of entropy
BCRYPT_ROUNDS = 12


@functools.cache
def dummy_hash(rounds: int = BCRYPT_ROUNDS) -> bytes:
    """Return the hash checked when a username is unknown, at the cost real hashes use.

    Made once, on first use (about 0.3 s at cost 12). A cheaper one would answer unknown names
    a hundred times faster than known ones and tell a stranger which usernames exist.
    """
    return bcrypt.hashpw(b"codexpool-timing-equaliser", bcrypt.gensalt(rounds=rounds))


def bcrypt_cost(hashed: str | bytes) -> int:
    """Return the cost factor written in a bcrypt hash (`$2b$12$...` -> 12)."""
    text = hashed.decode() if isinstance(hashed, bytes) else hashed
    return int(text.split("$")[2])


def is_bcrypt_hash(value: str) -> bool:
    """Tell whether a settings value is already a bcrypt hash rather than a plain password."""
    return value.startswith(("$2a$", "$2b$", "$2y$")) and len(value) == 60


def hash_password(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """Hash a password with bcrypt (CPU-heavy: call through asyncio.to_thread on the server)."""
    return bcrypt.hashpw(password.encode("utf-8")[:72], bcrypt.gensalt(rounds=rounds)).decode()


def verify_password(password: str, hashed: str | None) -> bool:
    """Check a password against a bcrypt hash; a missing hash still costs one bcrypt check."""
    candidate = password.encode("utf-8")[:72]
    if not hashed:
        bcrypt.checkpw(candidate, dummy_hash())
        return False
    try:
        return bcrypt.checkpw(candidate, hashed.encode())
    except ValueError:
        return False


def mint_key(prefix: str) -> str:
    """Return a new endpoint key: the prefix plus 48 random base62 characters."""
    return prefix + "".join(secrets.choice(BASE62) for _ in range(KEY_RANDOM_CHARS))


def key_digest(key: str) -> str:
    """Return the SHA-256 hex digest used to look a key up."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_hint(key: str, prefix: str) -> str:
    """Return the displayable part of a key: its prefix and the last four characters."""
    return f"{prefix}...{key[-4:]}"


def random_secret(nbytes: int = 32) -> str:
    """Return a URL-safe random secret for settings written by `codexpool init`."""
    return secrets.token_urlsafe(nbytes)


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two secrets without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def derive_fernet_key(secret: str, purpose: bytes) -> bytes:
    """Derive a Fernet key from an operator secret of any shape, separated by purpose."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"codexpool", info=purpose)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode("utf-8")))


class KeyCipher:
    """Encrypts endpoint keys for admin reveal with a key derived from the settings secret."""

    def __init__(self, secret: str) -> None:
        self._fernet = Fernet(derive_fernet_key(secret, b"api-key-reveal"))

    def encrypt(self, key: str) -> str:
        """Return the ciphertext stored beside the digest."""
        return self._fernet.encrypt(key.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str | None:
        """Return the plain key, or None when the secret changed since it was stored."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            return None
