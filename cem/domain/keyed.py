"""Keyed hashes: names for personal values that only the holder of the secret key can compute.

An unkeyed hash of an email (SHA-256, blake2) is as good as the email to anyone with a list of emails: hash the
list and compare. A keyed hash needs the key too, so it can sit in an audit table, a Kafka message or a
mutation's text without re-identifying anyone.
"""

from __future__ import annotations

import hashlib

# Used when CEM_SECRET_KEY is empty, so that a laptop demo works; it is public, so it protects nothing.
DEVELOPMENT_KEY = b"cem development key: set CEM_SECRET_KEY in production"
# blake2b's personalisation keeps these hashes apart from any other use of the same key (message signatures).
_PERSON = b"cem.keyed_hash"


def key_bytes(secret: str) -> bytes:
    """The key for a CEM_SECRET_KEY value: the development key when it is empty. blake2b takes at most 64
    bytes of key, so a longer secret is hashed down first."""
    if not secret:
        return DEVELOPMENT_KEY
    raw = secret.encode()
    return raw if len(raw) <= 64 else hashlib.blake2b(raw, digest_size=64).digest()


def keyed_hash(key: bytes, *parts: str) -> str:
    """Hex keyed blake2b-256 of the parts, each length-prefixed so that ("ab", "c") != ("a", "bc")."""
    message = "".join(f"{len(part)}:{part}" for part in parts).encode()
    return hashlib.blake2b(message, key=key, digest_size=32, person=_PERSON).hexdigest()
