"""Keys and authenticated encryption.

A repository has one random *master key*: 32 bytes for AES-256-GCM, 32 bytes for the keyed
BLAKE3 that names chunks (so ids reveal nothing about content), from which the chunker's secret
gear table is also derived (engine/chunker.py). The master key is stored
once per password in ``keys/<id>``, wrapped (AES-256-GCM) by a key derived from the password with
Argon2id. See docs/format.md.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import argon2.low_level
import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kubekeep import errors

NONCE_SIZE = 12
TAG_SIZE = 16
#: bytes added to every encrypted object: nonce + GCM tag
OVERHEAD = NONCE_SIZE + TAG_SIZE
#: AES-256-GCM keys, keyed-BLAKE3 keys and the key derived from a password
KEY_SIZE = 32
#: a master key's bytes: its encryption key, then its identity key
MASTER_KEY_SIZE = 2 * KEY_SIZE


@dataclass(frozen=True)
class MasterKey:
    encryption: bytes  # AES-256-GCM key
    identity: bytes  # keyed-BLAKE3 key for blob ids

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_SIZE), secrets.token_bytes(KEY_SIZE))

    def to_bytes(self) -> bytes:
        return self.encryption + self.identity

    @classmethod
    def from_bytes(cls, raw: bytes) -> MasterKey:
        if len(raw) != MASTER_KEY_SIZE:
            raise errors.IntegrityError("master key has the wrong length; the key file is damaged")
        return cls(raw[:KEY_SIZE], raw[KEY_SIZE:])

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """The keyed BLAKE3-256 of a plaintext blob: its id in this repository."""
        return blake3.blake3(data, key=self.identity).digest()

    def cipher(self) -> Cipher:
        return Cipher(self.encryption)


class Cipher:
    """AES-256-GCM with a random 96-bit nonce per object, prefixed to the ciphertext.

    ``aad`` binds a ciphertext to its role (its blob id, or the kind of metadata object) so that
    an attacker with write access cannot swap one valid object for another unnoticed.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes | bytearray | memoryview, aad: bytes) -> bytearray:
        """``nonce || ciphertext || tag``, encrypted straight into the result (no copies)."""
        nonce = os.urandom(NONCE_SIZE)
        out = bytearray(NONCE_SIZE + len(plaintext) + TAG_SIZE)
        out[:NONCE_SIZE] = nonce
        self._aead.encrypt_into(nonce, plaintext, aad, memoryview(out)[NONCE_SIZE:])
        return out

    def decrypt(self, ciphertext: bytes | memoryview, aad: bytes, what: str) -> bytes:
        view = memoryview(ciphertext)
        if len(view) < OVERHEAD:
            raise errors.IntegrityError(f"{what}: encrypted object is truncated")
        try:
            return self._aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise errors.IntegrityError(f"{what}: authentication failed (data corrupted or tampered with)") from None


def derive_key(password: bytes, salt: bytes, *, time_cost: int, memory_kib: int, parallelism: int) -> bytes:
    """Argon2id, 32 bytes: the key that wraps the master key in a key file (engine/keyfile.py
    validates the parameters first)."""
    return argon2.low_level.hash_secret_raw(
        secret=password,
        salt=salt,
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        hash_len=KEY_SIZE,
        type=argon2.low_level.Type.ID,
    )
