"""The codec server's bearer tokens: made here, stored only as SHA-256 hash lines.

A token is 256 random bits (``aiops-codec-`` + URL-safe base64), so a plain SHA-256 of it is as
good as a slow password hash: nothing to brute-force. The config holds ``name:sha256:<hex>`` lines;
the name says whose token it is in logs and lets one be revoked by deleting its line.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from aiops.codec.settings import CodecConfigError

TOKEN_PREFIX = "aiops-codec-"
HASH_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._@-]{0,63}):sha256:([0-9a-f]{64})$")


def new_token(name: str) -> tuple[str, str]:
    """A fresh random token and the hash line to put in ``AIOPS_CODEC_SERVER_TOKENS``."""
    if not HASH_LINE.match(f"{name}:sha256:{'0' * 64}"):
        raise CodecConfigError(f"{name[:64]!r} is not a token name: letters, digits, '.', '_', '@', '-'")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, f"{name}:sha256:{hashlib.sha256(token.encode()).hexdigest()}"


def parse_hash_lines(text: str, where: str) -> dict[str, bytes]:
    """Token name -> SHA-256 digest, from ``name:sha256:<hex>`` lines (``#`` starts a comment)."""
    found: dict[str, bytes] = {}
    for number, raw in enumerate(re.split(r"[,\n]", text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = HASH_LINE.match(line)
        if match is None:  # never echoed: it may be a token pasted by mistake
            raise CodecConfigError(
                f"{where}: entry {number} is not a hash line name:sha256:<64 hex digits> "
                "(`aiops codec token NAME` prints one; never put the token itself here)"
            )
        found[match.group(1)] = bytes.fromhex(match.group(2))
    if not found:
        raise CodecConfigError(f"{where} holds no token hashes")
    return found
