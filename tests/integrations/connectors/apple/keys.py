"""Key pairs for the Apple tests, generated when the tests run (never committed)."""

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)


def key_pair(curve: ec.EllipticCurve | None = None, *, sec1: bool = False) -> tuple[str, str]:
    """(private PEM, public PEM) of a new EC key: PKCS#8 as Apple's download, or SEC1 as openssl writes it."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    form = PrivateFormat.TraditionalOpenSSL if sec1 else PrivateFormat.PKCS8
    private = key.private_bytes(Encoding.PEM, form, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def rsa_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def encrypted_private_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"passphrase")).decode()
