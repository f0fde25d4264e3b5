"""``EncryptionCodec``: AES-256-GCM over whole serialized payloads, the key named in metadata.

Why AES-GCM from ``cryptography``: an authenticated cipher (a tampered or truncated payload fails
to open instead of decoding to garbage), hardware-accelerated, and from a library the project
already depends on for its approval signatures. A 96-bit nonce is drawn fresh from the OS for every
payload; with random nonces one key stays well inside GCM's safety bound for 2^32 payloads (about
4 billion), so rotate a key long before that (docs/encryption.md).

The sealed payload is ``{encoding: binary/encrypted, encryption-key-id: <id>}`` over
``nonce || ciphertext+tag`` of the original payload's protobuf bytes (its own metadata included,
so the encoding of the inner value is hidden too). The key id is also the cipher's associated
data: a payload whose metadata is edited to name another key does not open.

Decoding leaves payloads that are not ``binary/encrypted`` as they are: histories written before
encryption was turned on (and the recorded histories the replay tests use) still read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from aiops.contracts.errors import AiopsError

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


class CodecError(AiopsError):
    """A payload the codec cannot open: damaged, or sealed with a key this process lacks."""


class UnknownKeyError(CodecError):
    """A payload sealed with a key id that is not in this process's key list."""


class EncryptionCodec(PayloadCodec):
    """Encrypt with ``current``; decrypt with any of ``keys`` (key id -> 32-byte key)."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise CodecError(f"the current key {current!r} is not among the keys {sorted(keys)}")
        for key_id, key in keys.items():
            if len(key) != KEY_BYTES:
                raise CodecError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current
        self._current_id = current.encode()
        self._current_cipher = self._ciphers[current]

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]

    def seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current_cipher.encrypt(nonce, payload.SerializeToString(), self._current_id)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self._current_id},
            data=nonce + sealed,
        )

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written in clear (before encryption was on): read as it is
        raw_id = payload.metadata.get(KEY_ID_METADATA, b"")
        key_id = raw_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(
                f"a payload is encrypted with key {key_id[:64]!r}, which this process does not have "
                f"(its keys: {', '.join(self.key_ids)}); add it to AIOPS_CODEC_KEYS to read it"
            )
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            raise CodecError(f"a payload encrypted with key {key_id!r} is truncated")
        try:
            clear = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], raw_id)
        except InvalidTag:
            raise CodecError(
                f"a payload encrypted with key {key_id!r} does not open with that key: the key "
                "changed under the same id, or the payload was altered"
            ) from None
        inner = Payload()
        inner.ParseFromString(clear)
        return inner
