"""Secrets: bcrypt, key minting, digests and the reveal cipher."""

from __future__ import annotations

from codexpool.security import (
    BASE62,
    KeyCipher,
    hash_password,
    is_bcrypt_hash,
    key_digest,
    key_hint,
    mint_key,
    verify_password,
)


def test_password_hash_roundtrip() -> None:
    hashed = hash_password("correct horse", rounds=4)
    assert is_bcrypt_hash(hashed)
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong horse", hashed)
    assert not verify_password("anything", None)
    assert not verify_password("anything", "not-a-hash")


def test_minted_keys_are_prefixed_random_base62() -> None:
    keys = {mint_key("sk-x-") for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("sk-x-")
        body = key[len("sk-x-") :]
        assert len(body) >= 40
        assert set(body) <= set(BASE62)


def test_digest_and_hint() -> None:
    key = mint_key("sk-a-")
    assert key_digest(key) == key_digest(key)
    assert key_digest(key) != key_digest(key + "x")
    assert len(key_digest(key)) == 64
    hint = key_hint(key, "sk-a-")
    assert hint.startswith("sk-a-") and hint.endswith(key[-4:]) and key not in hint


def test_cipher_roundtrip_and_wrong_secret() -> None:
    cipher = KeyCipher("a" * 40)
    token = cipher.encrypt("sk-a-secretvalue")
    assert "secretvalue" not in token
    assert cipher.decrypt(token) == "sk-a-secretvalue"
    assert KeyCipher("b" * 40).decrypt(token) is None
    assert cipher.decrypt("garbage") is None
