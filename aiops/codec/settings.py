"""Which keys the codec uses, from the environment, like every other connection setting.

    AIOPS_CODEC_KEYS=k2=env:AIOPS_CODEC_KEY_K2,k1=file:/run/secrets/aiops-codec-k1
    AIOPS_CODEC_CURRENT=k2

``AIOPS_CODEC_KEYS`` lists ``id=reference`` pairs; a reference is a secret reference as everywhere
in the framework (``env:NAME`` or ``file:/path``, ``agents.secrets``) and never a literal key. The
value it points at is a 256-bit key written as 64 hex digits or as base64 (``aiops codec key``
prints one). ``AIOPS_CODEC_CURRENT`` names the key new payloads are sealed with (default: the first
listed); every listed key opens payloads, which is how a key is rotated out (docs/encryption.md).

Unset ``AIOPS_CODEC_KEYS``: no encryption (the dev stack's default). Set but wrong in any way (a
malformed pair, an unreadable reference, a key of the wrong length, a current id not listed,
``AIOPS_CODEC_CURRENT`` without keys): ``CodecConfigError`` when the process starts, never a
silent fall back to clear text.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from agents.secrets import resolve_reference
from aiops.codec.aes import KEY_BYTES, EncryptionCodec
from aiops.contracts.errors import AiopsError, SecretUnavailableError
from aiops.contracts.secret_refs import is_reference

KEYS_ENV = "AIOPS_CODEC_KEYS"
CURRENT_ENV = "AIOPS_CODEC_CURRENT"
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_KEYS = 32


class CodecConfigError(AiopsError):
    """The encryption settings cannot be used; the message names the setting and the fix."""


@dataclass(frozen=True)
class CodecKeys:
    """Key id -> 32-byte key, and the id new payloads are sealed with."""

    keys: Mapping[str, bytes]
    current: str

    def codec(self) -> EncryptionCodec:
        return EncryptionCodec(self.keys, self.current)


def new_key() -> str:
    """A fresh random 256-bit key, base64 (what ``aiops codec key`` prints)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(text: str, where: str) -> bytes:
    """A 256-bit key from 64 hex digits or base64 (standard or URL-safe, padded or not)."""
    value = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return bytes.fromhex(value)
    try:  # URL-safe base64 too, padded or not
        padded = value.translate(str.maketrans("-_", "+/")) + "=" * (-len(value) % 4)
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise CodecConfigError(
            f"{where}: not a key: give 64 hex digits or base64 of 32 bytes (`aiops codec key` makes one)"
        ) from None
    if len(key) != KEY_BYTES:
        raise CodecConfigError(f"{where}: the key is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
    return key


def load_keys(spec: str, current: str | None = None, where: str = KEYS_ENV) -> CodecKeys:
    """Parse ``id=reference,...`` and resolve each reference; raise ``CodecConfigError``."""
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for number, part in enumerate((p.strip() for p in spec.split(",")), start=1):
        if not part:
            continue
        key_id, sep, reference = (s.strip() for s in part.partition("="))
        if not sep or not KEY_ID.match(key_id):
            raise CodecConfigError(
                f"{where}: entry {number} is not id=reference (an id of letters, digits, '.', '_', '-', "
                "then env:NAME or file:/path)"
            )
        if not is_reference(reference):
            raise CodecConfigError(
                f"{where}: key {key_id!r} is not a reference; a key is never written "
                f'inline: give "env:NAME" or "file:/path"'
            )
        if key_id in keys:
            raise CodecConfigError(f"{where}: key {key_id!r} is listed twice")
        try:
            material = resolve_reference(reference, f"{where} key {key_id!r}")
        except SecretUnavailableError as err:
            raise CodecConfigError(str(err)) from None
        keys[key_id] = parse_key(material, f"{where} key {key_id!r} ({reference})")
        order.append(key_id)
    if not keys:
        raise CodecConfigError(f"{where} lists no keys: give id=env:NAME or id=file:/path")
    if len(keys) > MAX_KEYS:
        raise CodecConfigError(f"{where} lists {len(keys)} keys, over the limit of {MAX_KEYS}")
    chosen = (current or "").strip() or order[0]
    if chosen not in keys:
        raise CodecConfigError(
            f"{CURRENT_ENV}={chosen!r} is not among the keys of {where} ({', '.join(order)})"
        )
    return CodecKeys(keys, chosen)


def keys_from_env(environ: Mapping[str, str] | None = None) -> CodecKeys | None:
    """The configured keys, or ``None`` when encryption is off (``AIOPS_CODEC_KEYS`` unset)."""
    source = os.environ if environ is None else environ
    spec = source.get(KEYS_ENV, "").strip()
    current = source.get(CURRENT_ENV, "").strip()
    if not spec:
        if current:
            raise CodecConfigError(
                f"{CURRENT_ENV} is set but {KEYS_ENV} is not: refusing to write in clear text; "
                f"list the keys in {KEYS_ENV} (id=env:NAME,...) or unset {CURRENT_ENV}"
            )
        return None
    return load_keys(spec, current or None)


def codec_from_env(environ: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    keys = keys_from_env(environ)
    return keys.codec() if keys is not None else None
