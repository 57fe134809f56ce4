"""Secret references: how a credential is named in the database without being stored there.

A reference is one of

- ``env:NAME``          an environment variable of the worker;
- ``file:/abs/path``    a file such as a Kubernetes or Docker secret (one trailing newline is dropped);
- ``vault:path#key``    a key of a HashiCorp Vault KV v2 secret;
- ``enc:<token>``       a Fernet token made by this server from a value typed into a form.

Error messages name the reference (variable, path, Vault path) and never the value. ``Redactor`` and
``mask_url`` keep secret values out of log lines and exception messages.
"""

import base64
import fnmatch
import functools
import os
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

from syncplane.integrations.errors import ConfigurationError, TransientError

SCHEMES = ("env", "file", "enc", "vault")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FERNET_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+=*$")
_VAULT_PATH = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_VAULT_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")


# --- references --------------------------------------------------------------------------------------


def _split(value: str) -> tuple[str, str]:
    scheme, sep, rest = value.partition(":")
    if not sep or scheme not in SCHEMES:
        raise ValueError(
            "A secret reference must start with one of " + ", ".join(f"{s}:" for s in SCHEMES) + "."
        )
    return scheme, rest


def validate_reference(value) -> None:
    """Raise ValueError, with a reason a user can act on, unless ``value`` is a well-formed reference."""
    if not isinstance(value, str) or not value:
        raise ValueError("A secret reference must be a non-empty string.")
    if value != value.strip() or any(c in value for c in "\r\n\x00"):
        raise ValueError("A secret reference must not contain spaces around it, line breaks or NUL.")
    scheme, rest = _split(value)
    if scheme == "env":
        if not _ENV_NAME.match(rest):
            raise ValueError("env: needs an environment variable name such as env:SERVICENOW_PASSWORD.")
    elif scheme == "file":
        if not rest.startswith("/"):
            raise ValueError("file: needs an absolute path such as file:/run/secrets/servicenow.")
        if "/../" in rest + "/" or rest.endswith("/"):
            raise ValueError("file: needs a path to a file, without '..' components.")
    elif scheme == "enc":
        if not _FERNET_TOKEN.match(rest):
            raise ValueError("enc: must be followed by a token produced by this server.")
    elif scheme == "vault":
        path, sep, key = rest.partition("#")
        if not sep or not path or not key:
            raise ValueError("vault: needs a path and a key: vault:syncplane/servicenow#password.")
        if not _VAULT_PATH.match(path) or "/../" in f"/{path}/" or "/./" in f"/{path}/":
            raise ValueError("vault: the path may hold letters, digits, '_', '-', '.' and '/' separators.")
        if not _VAULT_KEY.match(key):
            raise ValueError("vault: the key may hold letters, digits, '_', '-' and '.'.")


def is_secret_reference(value) -> bool:
    try:
        validate_reference(value)
    except ValueError:
        return False
    return True


def to_reference(value: str) -> str:
    """What the API stores for a credential field a user submitted.

    An env:, file: or vault: reference is kept, and refused with the reason when it is malformed (a typo
    there is far likelier than a password that starts with "env:"). Anything else, including an ``enc:``
    token typed by a user (which could be a token copied from another integration), is treated as a plain
    value and encrypted, so a user can never make the server decrypt a token they chose.
    """
    if not isinstance(value, str) or value == "":
        raise ValueError("A secret must be a non-empty string.")
    if value.startswith(("env:", "file:", "vault:")):
        validate_reference(value)
        check_reference_allowed(value)
        return value
    return encrypt_secret(value)


def check_reference_allowed(ref: str) -> None:
    """Refuse a reference outside what the operator allows: env: and file: references must match
    SYNCPLANE_SECRET_REFERENCE_ALLOW, vault: paths SYNCPLANE_VAULT_PATH_ALLOW (shell-style patterns).

    Those references read the server's own environment, files and Vault: without a limit, whoever may edit an
    integration could point one at env:DATABASE_URL (or any secret the server's Vault token can read) and send
    it, as a password, to a URL they choose.
    """
    from django.conf import settings

    scheme, rest = _split(ref)
    if scheme == "vault":
        # The path, not the key: a policy names secrets. validate_reference refuses '..' and '.' components.
        path = rest.partition("#")[0]
        patterns = settings.SYNCPLANE_VAULT_PATH_ALLOW
        if not any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
            allowed = ", ".join(patterns) or "none"
            raise ValueError(f"vault: paths are limited to {allowed} (SYNCPLANE_VAULT_PATH_ALLOW); "
                             "store the secret under an allowed path, or store the value itself")
        return
    if scheme not in ("env", "file"):
        return
    # A file path cannot climb out of an allowed folder: validate_reference refuses '..' components.
    patterns = settings.SYNCPLANE_SECRET_REFERENCE_ALLOW
    if not any(fnmatch.fnmatchcase(f"{scheme}:{rest}", pattern) for pattern in patterns):
        allowed = ", ".join(patterns) or "none"
        raise ValueError(f"{scheme}: references are limited to {allowed} (SYNCPLANE_SECRET_REFERENCE_ALLOW); "
                         "store the value itself, or use a vault: reference")


def resolve_secret(ref: str) -> str:
    """The value behind a reference. Raises ConfigurationError (or TransientError when Vault is down)."""
    try:
        validate_reference(ref)
    except ValueError as exc:
        raise ConfigurationError(f"Bad secret reference: {exc}") from None
    scheme, rest = _split(ref)
    if scheme == "env":
        return _resolve_env(rest)
    if scheme == "file":
        return _resolve_file(rest)
    if scheme == "enc":
        return decrypt_secret(ref)
    path, _, key = rest.partition("#")
    return _resolve_vault(path, key)


def _resolve_env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ConfigurationError(f"Secret reference env:{name}: environment variable {name} is not set")
    if value == "":
        raise ConfigurationError(f"Secret reference env:{name}: environment variable {name} is empty")
    return value


def _resolve_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigurationError(f"Secret reference file:{path}: cannot read the file ({reason})") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"Secret reference file:{path}: the file is not UTF-8 text") from None
    # Files written by `echo` or editors end in a newline that is not part of the secret.
    if value.endswith("\r\n"):
        value = value[:-2]
    elif value.endswith("\n"):
        value = value[:-1]
    if value == "":
        raise ConfigurationError(f"Secret reference file:{path}: the file is empty")
    return value


# --- enc: ------------------------------------------------------------------------------------------------


def _settings():
    from django.conf import settings

    return settings


@functools.lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...], secret_key: str):
    from cryptography.fernet import Fernet, MultiFernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if not keys:
        if not secret_key:
            raise ConfigurationError("Neither SYNCPLANE_ENCRYPTION_KEYS nor SECRET_KEY is set")
        # One key derived from SECRET_KEY, so a fresh install can store enc: secrets with no extra setup.
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"syncplane-secrets").derive(
            secret_key.encode()
        )
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    fernets = []
    for index, key in enumerate(keys):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"SYNCPLANE_ENCRYPTION_KEYS[{index}] is not a valid Fernet key (32 url-safe base64 bytes)"
            ) from None
    # The first key encrypts; every key decrypts, so keys can be rotated without a flag day.
    return MultiFernet(fernets)


def _fernet():
    settings = _settings()
    keys = getattr(settings, "SYNCPLANE_ENCRYPTION_KEYS", None) or ()
    if isinstance(keys, str):
        keys = keys.split(",")
    keys = tuple(k.strip() for k in keys if k and k.strip())
    return _multifernet(keys, "" if keys else getattr(settings, "SECRET_KEY", ""))


def encrypt_secret(plain: str) -> str:
    """``enc:<token>`` for a plain value, encrypted with the first key."""
    if not isinstance(plain, str):
        raise TypeError("encrypt_secret() takes a str")
    return "enc:" + _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt_secret(ref: str) -> str:
    from cryptography.fernet import InvalidToken

    token = ref.removeprefix("enc:")
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise ConfigurationError(
            "Secret reference enc:...: cannot decrypt it with the server's keys "
            "(made by another server, or its key was removed from SYNCPLANE_ENCRYPTION_KEYS)"
        ) from None


def rotate_secret(ref: str) -> str:
    """Re-encrypt an ``enc:`` reference with the current first key (other references are returned as is)."""
    from cryptography.fernet import InvalidToken

    if not ref.startswith("enc:"):
        return ref
    try:
        return "enc:" + _fernet().rotate(ref[4:].encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise ConfigurationError(
            "Secret reference enc:...: cannot decrypt it with the server's keys"
        ) from None


# --- vault: ----------------------------------------------------------------------------------------------


def _vault_token(settings) -> str:
    token = getattr(settings, "SYNCPLANE_VAULT_TOKEN", "") or ""
    if token.startswith("vault:"):
        # The token that opens Vault cannot itself live in Vault.
        raise ConfigurationError("SYNCPLANE_VAULT_TOKEN cannot be a vault: reference")
    if token.startswith(("env:", "file:", "enc:")):
        return resolve_secret(token)
    if not token:
        raise ConfigurationError("SYNCPLANE_VAULT_TOKEN is not set")
    return token


def _resolve_vault(path: str, key: str) -> str:
    import hvac
    import requests
    from hvac import exceptions as vault_errors

    settings = _settings()
    addr = getattr(settings, "SYNCPLANE_VAULT_ADDR", "") or ""
    if not addr:
        raise ConfigurationError(f"Secret reference vault:{path}#{key}: SYNCPLANE_VAULT_ADDR is not set")
    mount = getattr(settings, "SYNCPLANE_VAULT_MOUNT", "") or "secret"
    where = f"vault:{path}#{key}"
    client = hvac.Client(url=addr, token=_vault_token(settings), timeout=10)
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except vault_errors.InvalidPath:
        raise ConfigurationError(f"Secret reference {where}: no such secret in mount {mount!r}") from None
    except (vault_errors.Forbidden, vault_errors.Unauthorized):
        raise ConfigurationError(
            f"Secret reference {where}: Vault refused the token (permission denied)"
        ) from None
    except (
        vault_errors.VaultDown,
        vault_errors.InternalServerError,
        vault_errors.BadGateway,
        vault_errors.RateLimitExceeded,
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
    ) as exc:
        raise TransientError(
            f"Secret reference {where}: Vault is unreachable ({exc.__class__.__name__})"
        ) from None
    except vault_errors.VaultError as exc:
        raise ConfigurationError(
            f"Secret reference {where}: Vault error ({exc.__class__.__name__})"
        ) from None
    finally:
        client.adapter.close()
    data = ((response or {}).get("data") or {}).get("data") or {}
    if key not in data:
        raise ConfigurationError(f"Secret reference {where}: the secret has no key {key!r}")
    value = data[key]
    return value if isinstance(value, str) else str(value)


# --- keeping secrets out of text ----------------------------------------------------------------------

# Authorization header values, whatever credential they carry (Basic holds base64 of "user:password",
# whose user part the redactor may not know).
_AUTH_HEADER = re.compile(r"(?i)\b(Authorization[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]+\s+)?[^\s\"',;]+")
_AUTH_VALUE = re.compile(r"\b(Basic|Bearer)(\s+)([A-Za-z0-9._~+/\-]+=*)")


def _mask_auth_value(match: re.Match) -> str:
    credential = match.group(3)
    # Leave prose alone ("Basic authentication failed"): a credential has a digit, a symbol or mixed case.
    looks_like_credential = len(credential) >= 20 or not (credential.isalpha() and credential.islower())
    if not looks_like_credential:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{Redactor.MASK}"


class Redactor:
    """Replaces known secret values in text with ``***``.

    Every non-empty secret is redacted, short ones included: a mangled message is better than a leaked
    password. The base64 and URL-encoded forms are redacted too, since that is how secrets travel in
    Basic auth headers, form bodies and query strings.
    """

    MASK = "***"

    def __init__(self, secrets: Iterable[str] = ()):
        self._needles: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or not isinstance(secret, str):
            return
        self._needles.add(secret)
        self._needles.add(quote(secret, safe=""))
        self._needles.add(quote_plus(secret))
        encoded = base64.b64encode(secret.encode()).decode()
        self._needles.add(encoded)
        self._needles.add(encoded.rstrip("="))
        self._needles.add(base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="))

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if not text:
            return text
        text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{self.MASK}", text)
        text = _AUTH_VALUE.sub(_mask_auth_value, text)
        # Longest first, so a secret that contains another is replaced whole.
        for needle in sorted(self._needles, key=len, reverse=True):
            if needle in text:
                text = text.replace(needle, self.MASK)
        return text


def redact(text: str, secrets: Iterable[str]) -> str:
    return Redactor(secrets).redact(text)


_SENSITIVE_PARAM = re.compile(
    r"token|secret|passw|pwd|key|signature|^sig$|auth|credential|session|code_verifier", re.IGNORECASE
)


def mask_url(url: str) -> str:
    """A URL fit for a log line: no user info, no fragment, sensitive query values replaced by ``***``."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    pieces = []
    for piece in parts.query.split("&") if parts.query else ():
        name, sep, _value = piece.partition("=")
        if sep and _SENSITIVE_PARAM.search(unquote_plus(name)):
            pieces.append(f"{name}=***")
        else:
            pieces.append(piece)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), ""))
