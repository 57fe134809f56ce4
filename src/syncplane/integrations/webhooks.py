"""Signature checks of inbound webhooks: the caller proves it is the integration's system, in constant time.

Two schemes, named by the connector (`webhook_signature`): "hmac-sha256", where the system signs the raw body
with the shared secret (`X-Hub-Signature: sha256=<hex>`), and "shared-secret", where it sends the secret
itself in a header the admin configures (`X-Syncplane-Webhook-Secret: <secret>`). Any other scheme fails.

Replays: none of the ITSM tools we take webhooks from signs a time (ServiceNow, Jira Service Management and
Freshservice sign the body or send a secret, per their api notes), so a captured notification could be sent
again. A sender that can add a header gets replay protection with the HMAC scheme: it sends
`X-Syncplane-Webhook-Timestamp: <unix seconds>` and signs `<timestamp>.<raw body>`; a notification whose
timestamp is more than MAX_AGE_SECONDS away from our clock is refused, and the timestamp cannot be changed or
dropped without breaking the signature. (A replay within the window is harmless: a notification is a hint,
the changes it names are read back from the ITSM tool.)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Hub-Signature"
SECRET_HEADER = "X-Syncplane-Webhook-Secret"
TIMESTAMP_HEADER = "X-Syncplane-Webhook-Timestamp"
MAX_AGE_SECONDS = 300  # clocks of sender and receiver may differ a little; a replay days later must fail


def hmac_sha256_signature(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """The header value a sender computes: "sha256=" and the hex HMAC-SHA256 of the raw body, or of
    "<timestamp>.<raw body>" when it sends a timestamp."""
    signed = body if timestamp is None else timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_ok(scheme: str, secret: str, body: bytes, headers: Mapping[str, str], *,
                 now: float | None = None) -> bool:
    """Constant-time check of the sender's proof, per the connector's scheme; the body is the raw bytes."""
    if scheme == "hmac-sha256":
        timestamp = headers.get(TIMESTAMP_HEADER)
        expected = hmac_sha256_signature(secret, body, timestamp)
        signed_ok = hmac.compare_digest(headers.get(SIGNATURE_HEADER, "").encode(), expected.encode())
        return signed_ok and (timestamp is None or _fresh(timestamp, time.time() if now is None else now))
    if scheme == "shared-secret":
        return hmac.compare_digest(headers.get(SECRET_HEADER, "").encode(), secret.encode())
    return False


def _fresh(timestamp: str, now: float) -> bool:
    try:
        sent = int(timestamp.strip())
    except ValueError:
        return False
    return abs(now - sent) <= MAX_AGE_SECONDS


__all__ = ["MAX_AGE_SECONDS", "SECRET_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "hmac_sha256_signature",
           "signature_ok"]
