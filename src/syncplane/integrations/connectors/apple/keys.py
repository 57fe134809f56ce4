"""The Apple Business API's private key: what the user pastes, checked before anything is signed with it.

The key is the `.pem` Apple Business Manager (or School Manager) offers once, when an API account's key is
generated: an EC key on P-256, the curve ES256 signs with. Apple's download is PKCS#8 (`BEGIN PRIVATE KEY`);
keys converted with openssl are often SEC1 (`BEGIN EC PRIVATE KEY`). Both load the same way. Messages say what
is wrong with the key and never quote it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from syncplane.integrations.errors import ConfigurationError

PEM_FORMS = ("-----BEGIN PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----")
EXPECTED = ("Apple Business Manager API keys are EC keys on P-256 (ES256): paste the .pem downloaded when the "
            "key was generated, from -----BEGIN PRIVATE KEY----- to -----END PRIVATE KEY-----")


def load_signing_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key of a PEM text; ConfigurationError saying what is wrong with it otherwise."""
    text = (pem or "").strip()
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text:
        raise ConfigurationError(f"the key is protected by a passphrase; store it without one. {EXPECTED}")
    if not text.startswith(PEM_FORMS):
        if "-----BEGIN" in text:
            kind = text.split("-----BEGIN", 1)[1].split("-----", 1)[0].strip()[:40]
            raise ConfigurationError(f"the PEM holds a {kind or 'different block'}, not a private key. {EXPECTED}")
        raise ConfigurationError(f"the value is not a PEM private key. {EXPECTED}")
    try:
        key = load_pem_private_key(text.encode("ascii", "replace"), password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(f"the PEM private key cannot be read (cut short or damaged?). {EXPECTED}") from None
    except Exception:  # cryptography raises UnsupportedAlgorithm for key types it does not know
        raise ConfigurationError(f"the PEM private key is of an unsupported type. {EXPECTED}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"the key is an RSA key ({key.key_size} bits). {EXPECTED}")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"the key is a {type(key).__name__.removesuffix('PrivateKey')} key. {EXPECTED}")
    if not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(f"the key is an EC key on {key.curve.name}, not P-256 (secp256r1). {EXPECTED}")
    return key
