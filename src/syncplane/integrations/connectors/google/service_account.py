"""Google service-account keys and the OAuth 2.0 JWT bearer grant (RFC 7523), as Google's APIs take them.

The key is the JSON file the Cloud console downloads (IAM > Service accounts > Keys). google-auth loads it
(`service_account.Credentials`) and signs the assertion with its signer; the token request itself goes through
Syncplane's HttpClient, so the outbound URL policy, retries with Retry-After and redaction apply to it, and
google-auth never opens a connection of its own. The token endpoint is the key's `token_uri`
(https://oauth2.googleapis.com/token for real keys), checked by the outbound URL policy when the key is saved
and again when the connector is built.

The assertion: header RS256 with `kid` = private_key_id; claims `iss` = client_email, `scope`, `aud` = token_uri,
`iat`, `exp` = iat + 1 h (Google refuses longer). POSTed form-encoded as
`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`; the answer is
`{"access_token", "expires_in", "token_type"}`. There is no refresh token: a new assertion gets a new token.
Refusals are OAuth-style (`invalid_grant` "Invalid JWT Signature." for a deleted key, "account not found"
for a deleted or disabled service account) and permanent; 429 and 5xx are transient.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt
from google.auth import jwt as google_jwt
from google.oauth2 import service_account

from syncplane.integrations.errors import AuthenticationError, ConfigurationError, IntegrationError, TransientError
from syncplane.integrations.http import extract_vendor_message, parse_retry_after
from syncplane.integrations.secrets import Redactor
from syncplane.integrations.urls_policy import check_outbound_url

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # the longest Google accepts
REQUIRED_FIELDS = ("type", "client_email", "private_key", "token_uri")
KEY_FILE_HINT = "paste the whole JSON key file of the service account (Cloud console: IAM > Service accounts > Keys)"


@dataclass(frozen=True)
class ServiceAccountKey:
    client_email: str
    token_uri: str
    key_id: str
    signer: crypt.Signer = field(repr=False)
    private_key: str = field(repr=False)  # the PEM, kept only to redact it


def load_key(text: str) -> ServiceAccountKey:
    """The key from its JSON; ConfigurationError saying what is missing or wrong, never quoting the key."""
    try:
        info = json.loads(text)
    except (TypeError, ValueError):
        raise ConfigurationError(f"is not JSON: {KEY_FILE_HINT}") from None
    if not isinstance(info, dict):
        raise ConfigurationError(f"is not a JSON object: {KEY_FILE_HINT}")
    missing = [name for name in REQUIRED_FIELDS if not isinstance(info.get(name), str) or not info[name].strip()]
    if missing:
        raise ConfigurationError(
            f"is not a complete service-account key: {', '.join(missing)} missing; {KEY_FILE_HINT}")
    if info["type"] != "service_account":
        kind = info["type"] if len(info["type"]) <= 40 else info["type"][:37] + "..."
        raise ConfigurationError(f"is a key of type {kind!r}, not 'service_account' (a user's OAuth client file "
                                 "or an external-account configuration cannot sign for a service account)")
    if "@" not in info["client_email"]:
        raise ConfigurationError("client_email is not an e-mail address (…@<project>.iam.gserviceaccount.com)")
    try:
        private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    except (TypeError, ValueError):
        raise ConfigurationError("private_key does not load as an unencrypted PEM private key (was the file "
                                 "edited or cut short?)") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ConfigurationError("private_key is not an RSA key: Google service-account keys are RSA (RS256)")
    try:
        credentials = service_account.Credentials.from_service_account_info(info)
    except (TypeError, ValueError):
        raise ConfigurationError(f"is not a service-account key google-auth can load: {KEY_FILE_HINT}") from None
    return ServiceAccountKey(client_email=info["client_email"].strip(), token_uri=info["token_uri"].strip(),
                             key_id=str(info.get("private_key_id") or ""), signer=credentials.signer,
                             private_key=info["private_key"])


def check_key(text: str) -> ServiceAccountKey:
    """load_key, and the key's token_uri (where the signed assertion goes) through the outbound URL policy."""
    key = load_key(text)
    try:
        check_outbound_url(key.token_uri)
    except IntegrationError as exc:
        raise ConfigurationError(f"token_uri: {exc}") from None
    return key


class ServiceAccountAuth(httpx.Auth):
    """Bearer token from the JWT bearer grant, cached until shortly before it expires; on a 401 from the API
    (a token expired or revoked early) one new token and one retry. A connector's HTTP runs on one thread at a
    time (the engine's fetch), so the cache needs no lock."""

    requires_response_body = True  # the token response is parsed

    def __init__(self, key: ServiceAccountKey, scope: str, *, clock: Callable[[], float] = time.time,
                 early_refresh_seconds: float = 60):
        self.key, self.scope = key, scope
        self._clock = clock
        self._early = early_refresh_seconds
        self._token: str | None = None
        self._assertion: str | None = None
        self._expires_at = 0.0
        self.token_requests = 0

    def secret_values(self) -> Iterable[str]:
        return [v for v in (self.key.private_key, self._assertion, self._token) if v]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None or self._clock() >= self._expires_at:
            yield from self._fetch_token()
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            yield from self._fetch_token()
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request

    def assertion(self) -> str:
        now = int(self._clock())
        claims = {"iss": self.key.client_email, "scope": self.scope, "aud": self.key.token_uri,
                  "iat": now, "exp": now + ASSERTION_LIFETIME}
        return google_jwt.encode(self.key.signer, claims).decode()

    def _fetch_token(self) -> Generator[httpx.Request, httpx.Response, None]:
        self.token_requests += 1
        self._token = None
        self._assertion = self.assertion()
        response = yield httpx.Request("POST", self.key.token_uri, headers={"Accept": "application/json"},
                                       data={"grant_type": JWT_BEARER, "assertion": self._assertion})
        if response.status_code != 200:
            raise self._token_error(response)
        try:
            payload = response.json()
        except (ValueError, UnicodeDecodeError):
            raise TransientError("Google token endpoint answered 200 without JSON") from None
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError("Google token endpoint answered without an access_token")
        try:
            lifetime = float(payload.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._token = token
        self._expires_at = self._clock() + lifetime - min(self._early, lifetime / 2)

    def _token_error(self, response: httpx.Response) -> IntegrationError:
        status = response.status_code
        vendor = Redactor(self.secret_values()).redact(" ".join(extract_vendor_message(response).split()))[:300]
        message = f"Google token endpoint answered {status}" + (f": {vendor}" if vendor else "")
        if status == 429 or status >= 500:
            return TransientError(message, status_code=status,
                                  retry_after=parse_retry_after(response.headers.get("Retry-After")))
        return AuthenticationError(
            f"{message}. The service-account key of {self.key.client_email} was refused: a deleted or disabled "
            "key or account needs a new key file", status_code=status)
