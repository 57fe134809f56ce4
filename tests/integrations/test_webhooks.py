"""Signature checks of inbound webhooks, per scheme."""

import hashlib
import hmac

from syncplane.integrations.webhooks import SECRET_HEADER, SIGNATURE_HEADER, signature_ok

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
