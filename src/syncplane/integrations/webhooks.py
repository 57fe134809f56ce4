"""Signature checks of inbound webhooks: the caller proves it is the integration's system, in constant time.

Two schemes, named by the connector (`webhook_signature`): "hmac-sha256", where the system signs the raw body
with the shared secret (`X-Hub-Signature: sha256=<hex>`), and "shared-secret", where it sends the secret
itself in a header the admin configures (`X-Syncplane-Webhook-Secret: <secret>`). Any other scheme fails.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Hub-Signature"
SECRET_HEADER = "X-Syncplane-Webhook-Secret"


def hmac_sha256_signature(secret: str, body: bytes) -> str:
    """The header value a sender computes: "sha256=" and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(scheme: str, secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """Constant-time check of the sender's proof, per the connector's scheme; the body is the raw bytes."""
    if scheme == "hmac-sha256":
        given = headers.get(SIGNATURE_HEADER, "")
        return hmac.compare_digest(given.encode(), hmac_sha256_signature(secret, body).encode())
    if scheme == "shared-secret":
        return hmac.compare_digest(headers.get(SECRET_HEADER, "").encode(), secret.encode())
    return False


__all__ = ["SECRET_HEADER", "SIGNATURE_HEADER", "hmac_sha256_signature", "signature_ok"]
