"""Signature checks of inbound webhooks, per scheme."""

import hashlib
import hmac

from syncplane.integrations.webhooks import (
    MAX_AGE_SECONDS,
    SECRET_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    hmac_sha256_signature,
    signature_ok,
)

BODY = b'{"id": "ext-1"}'


def test_hmac_sha256_covers_the_raw_body():
    good = "sha256=" + hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert signature_ok("hmac-sha256", "s3cret", BODY, {SIGNATURE_HEADER: good})
    assert not signature_ok("hmac-sha256", "s3cret", BODY + b" ", {SIGNATURE_HEADER: good})
    assert not signature_ok("hmac-sha256", "other", BODY, {SIGNATURE_HEADER: good})
    assert not signature_ok("hmac-sha256", "s3cret", BODY, {})


def test_shared_secret_is_the_header_itself():
    assert signature_ok("shared-secret", "s3cret", BODY, {SECRET_HEADER: "s3cret"})
    assert not signature_ok("shared-secret", "s3cret", BODY, {SECRET_HEADER: "s3cre"})
    assert not signature_ok("shared-secret", "s3cret", BODY, {})


def test_an_unknown_scheme_never_passes():
    assert not signature_ok("", "s3cret", BODY, {SECRET_HEADER: "s3cret"})


def test_a_timestamped_hmac_signature_is_refused_once_it_is_old():
    """Replay protection for senders that sign a time: the HMAC covers "<timestamp>.<body>", and a notification
    more than a few minutes from our clock is refused, however well signed."""
    now = 1_800_000_000
    stamp = str(now - 60)
    headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: hmac_sha256_signature("s3cret", BODY, stamp)}
    assert signature_ok("hmac-sha256", "s3cret", BODY, headers, now=now)
    assert not signature_ok("hmac-sha256", "s3cret", BODY, headers, now=now + MAX_AGE_SECONDS)  # replayed later
    assert not signature_ok("hmac-sha256", "s3cret", BODY, headers, now=now - MAX_AGE_SECONDS - 120)  # from the future


def test_the_timestamp_cannot_be_changed_or_dropped_without_breaking_the_signature():
    now = 1_800_000_000
    old = str(now - 3600)
    signature = hmac_sha256_signature("s3cret", BODY, old)
    assert not signature_ok("hmac-sha256", "s3cret", BODY, {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: signature},
                            now=now)
    assert not signature_ok("hmac-sha256", "s3cret", BODY, {SIGNATURE_HEADER: signature}, now=now)
    assert not signature_ok("hmac-sha256", "s3cret", BODY,
                            {TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: hmac_sha256_signature("s3cret", BODY, "soon")},
                            now=now)
