"""A software WebAuthn authenticator for tests: the authenticator's side, really implemented.

A P-256 key made with ``cryptography``; registration answers with attestation "none" (an
attestation object whose authenticator data carries the credential id and its COSE public key);
an assertion's authenticator data is SHA-256(rp id) + flags (UP, UV) + a sign counter, and its
signature is ECDSA-SHA256 over authenticatorData || SHA-256(clientDataJSON) — what a browser's
platform authenticator does, without a browser. Knobs let a test make a wrong one (another
origin or rp id, no user verification).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from aiops.contracts.passkey import (
    PasskeyAssertion,
    PasskeyClaims,
    PasskeyCredential,
    b64url,
    b64url_decode,
    passkey_challenge,
)

UP, UV, AT = 0x01, 0x04, 0x40


def _cose_key(public: ec.EllipticCurvePublicKey) -> bytes:
    numbers = public.public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x, -3: y})  # EC2, ES256, P-256


@dataclass
class SoftAuthenticator:
    """One passkey (one credential) of one person at one relying party."""

    rp_id: str
    origin: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    user_handle: bytes = b"aiops-test-user"
    sign_count: int = 0

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def public_key(self) -> str:
        """The base64url COSE public key, as the config line holds it."""
        return b64url(_cose_key(self.key.public_key()))

    def config_line(self, label: str | None = None) -> PasskeyCredential:
        return PasskeyCredential(id=self.id, public_key=self.public_key(), label=label)

    def _auth_data(self, rp_id: str, flags: int, attested: bytes = b"") -> bytes:
        self.sign_count += 1
        return (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([flags])
            + struct.pack(">I", self.sign_count)
            + attested
        )

    @staticmethod
    def _client_data(kind: str, challenge: bytes, origin: str) -> bytes:
        body = {"type": kind, "challenge": b64url(challenge), "origin": origin, "crossOrigin": False}
        return json.dumps(body, separators=(",", ":")).encode()

    def create(self, options: dict[str, Any], origin: str | None = None) -> dict[str, Any]:
        """``navigator.credentials.create`` for creation ``options`` (their JSON form): the
        registration response JSON a browser posts."""
        rp_id = options["rp"].get("id", self.rp_id)
        client_data = self._client_data(
            "webauthn.create", b64url_decode(options["challenge"]), origin or self.origin
        )
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id
        auth_data = self._auth_data(rp_id, UP | UV | AT, attested + _cose_key(self.key.public_key()))
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        challenge: bytes,
        origin: str | None = None,
        rp_id: str | None = None,
        user_verified: bool = True,
    ) -> dict[str, str]:
        """``navigator.credentials.get`` for ``challenge``: authenticator data, client data,
        signature and user handle, base64url."""
        client_data = self._client_data("webauthn.get", challenge, origin or self.origin)
        auth_data = self._auth_data(rp_id or self.rp_id, UP | (UV if user_verified else 0))
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "authenticator_data": b64url(auth_data),
            "client_data_json": b64url(client_data),
            "signature": b64url(signature),
            "user_handle": b64url(self.user_handle),
        }

    def assert_claims(self, claims: PasskeyClaims, **knobs: Any) -> PasskeyAssertion:
        """A passkey assertion over ``claims`` (their challenge), with the claims beside it."""
        answer = self.get(passkey_challenge(claims), **knobs)
        return PasskeyAssertion(claims=claims, credential_id=self.id, **answer)

    def sign(self, claims: PasskeyClaims, **knobs: Any) -> str:
        """The ``passkey:`` credential a decision carries."""
        return self.assert_claims(claims, **knobs).envelope()
