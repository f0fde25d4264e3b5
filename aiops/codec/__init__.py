"""Payload encryption: what the framework writes to Temporal, sealed with AES-256-GCM.

Temporal's data converter turns every workflow and activity argument, result, signal, update,
query answer, memo and failure into payloads; a *payload codec* transforms those bytes on their
way to and from the server. ``EncryptionCodec`` seals each one with a fresh nonce under the
current key and names the key in the payload's metadata, so rotating keys needs no migration:
new payloads use the new key, old ones open with any key still listed. Workflows never see it
(it runs in the client, on the far side of the SDK's sandbox), which is why it lives in the
``aiops`` layer and not beside the workflows.

Off unless configured (``AIOPS_CODEC_KEYS``, see ``aiops.codec.settings``); every client and
worker the project builds gets it through ``aiops.connection.connect``. docs/encryption.md says
what stays visible on the server without the key.
"""

from aiops.codec.aes import ENCODING, KEY_ID_METADATA, CodecError, EncryptionCodec, UnknownKeyError
from aiops.codec.converter import codec_data_converter, data_converter_from_env
from aiops.codec.settings import (
    CURRENT_ENV,
    KEYS_ENV,
    CodecConfigError,
    CodecKeys,
    codec_from_env,
    load_keys,
)

__all__ = [
    "CURRENT_ENV",
    "ENCODING",
    "KEYS_ENV",
    "KEY_ID_METADATA",
    "CodecConfigError",
    "CodecError",
    "CodecKeys",
    "EncryptionCodec",
    "UnknownKeyError",
    "codec_data_converter",
    "codec_from_env",
    "data_converter_from_env",
    "load_keys",
]
