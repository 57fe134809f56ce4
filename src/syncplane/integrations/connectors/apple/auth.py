"""How Syncplane proves who it is to Apple: two schemes, one per auth type.

- `ClientAssertionAuth` (Apple Business API): OAuth 2 client credentials where the client authenticates with a
  JWT it signs itself (ES256, header kid = key id; iss = sub = client id; aud = Apple's fixed audience; a fresh
  jti; a short life). The token cache, the early refresh and the one refresh-and-retry after a 401 are
  OAuth2Auth's; only the token request differs.
- `DepSessionAuth` (legacy Device Assignment API): an OAuth 1.0a-signed (HMAC-SHA1, by oauthlib) GET /session
  gives a session token, sent as X-ADM-Auth-Session on every call. Apple may answer any call with a new
  session token in that header: it replaces the stored one. 401, or 403 with the body FORBIDDEN, means the
  session is over: one new session, one retry; a refusal after that is the caller's AuthenticationError.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable

import httpx
import jwt
from oauthlib.oauth1 import SIGNATURE_HMAC, SIGNATURE_TYPE_AUTH_HEADER
from oauthlib.oauth1 import Client as OAuth1Client

from syncplane.integrations.auth import LockedFlowAuth, OAuth2Auth
from syncplane.integrations.errors import AuthenticationError, PermanentError, TransientError
from syncplane.integrations.http import extract_vendor_message, parse_retry_after
from syncplane.integrations.secrets import Redactor

# Apple checks `aud` against this exact URL, wherever the token request is posted.
ASSERTION_AUDIENCE = "https://account.apple.com/auth/oauth2/v2/token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 20 * 60  # Apple accepts up to 180 days; a short one is worth less when it leaks
SESSION_HEADER = "X-ADM-Auth-Session"
DEP_HEADERS = {"X-Server-Protocol-Version": "3", "Content-Type": "application/json;charset=UTF8"}


class ClientAssertionAuth(OAuth2Auth):
    def __init__(self, token_url: str, client_id: str, key_id: str, private_key, *, scope: str,
                 wall_clock: Callable[[], float] = time.time, **kwargs):
        # No client secret: the assertion takes its place (OAuth2Auth never sends an empty one).
        super().__init__(token_url, client_id, "", scope=scope, **kwargs)
        self.key_id = key_id
        self._private_key = private_key
        self._wall_clock = wall_clock
        self._assertion = ""

    def assertion(self) -> str:
        now = int(self._wall_clock())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": ASSERTION_AUDIENCE, "iat": now,
                  "exp": now + ASSERTION_LIFETIME, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self._private_key, algorithm="ES256", headers={"kid": self.key_id})

    def _token_request(self, form: dict) -> httpx.Request:
        self.token_requests += 1
        self._assertion = self.assertion()
        form = {**form, "client_id": self.client_id, "client_assertion_type": JWT_BEARER,
                "client_assertion": self._assertion}
        return httpx.Request("POST", self.token_url, data=form, headers={"Accept": "application/json"})

    def secret_values(self) -> Iterable[str]:
        # A signed assertion is a credential until it expires.
        return [*super().secret_values(), *([self._assertion] if self._assertion else [])]

    def _token_error(self, response: httpx.Response) -> Exception:
        error = super()._token_error(response)
        if isinstance(error, AuthenticationError):
            error = AuthenticationError(
                f"Apple refused the client assertion ({error.message}). Check the client ID and key ID, and that "
                "the key was not revoked or the API account deleted in Apple Business Manager (Preferences > API)",
                status_code=error.status_code)
        return error


class DepSessionAuth(LockedFlowAuth):

    def __init__(self, session_url: str, consumer_key: str, consumer_secret: str, access_token: str,
                 access_secret: str):
        self.session_url = session_url
        self._signer = OAuth1Client(consumer_key, client_secret=consumer_secret, resource_owner_key=access_token,
                                    resource_owner_secret=access_secret, signature_method=SIGNATURE_HMAC,
                                    signature_type=SIGNATURE_TYPE_AUTH_HEADER)
        self._secrets = (consumer_secret, access_token, access_secret)
        self._lock = threading.Lock()
        self._session: str | None = None
        self.sessions_started = 0
        self.rotations = 0

    def secret_values(self) -> Iterable[str]:
        return [v for v in (*self._secrets, self._session) if v]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        session = yield from self._valid_session()
        request.headers.update({**DEP_HEADERS, SESSION_HEADER: session})
        response = yield request
        self._rotate(response)
        if not _session_over(response):
            return
        session = yield from self._valid_session(rejected=session)
        request.headers[SESSION_HEADER] = session
        response = yield request
        self._rotate(response)

    def _rotate(self, response: httpx.Response) -> None:
        fresh = response.headers.get(SESSION_HEADER)
        if fresh and response.status_code < 400:
            with self._lock:
                if fresh != self._session:
                    self._session = fresh
                    self.rotations += 1

    def _valid_session(self, rejected: str | None = None) -> Generator[httpx.Request, httpx.Response, str]:
        if not self._lock.acquire(timeout=self.lock_timeout):
            raise TransientError("Timed out waiting for another thread to start an Apple DEP session")
        try:
            if self._session and self._session != rejected:
                return self._session
            _uri, headers, _body = self._signer.sign(self.session_url, http_method="GET")
            response = yield httpx.Request("GET", self.session_url, headers={**headers, **DEP_HEADERS})
            if response.status_code != 200:
                raise self._session_error(response)
            try:
                token = response.json().get("auth_session_token")
            except (ValueError, AttributeError):
                token = None
            if not isinstance(token, str) or not token:
                raise PermanentError("Apple DEP: GET /session answered without an auth_session_token")
            self._session = token
            self.sessions_started += 1
            return token
        finally:
            self._lock.release()

    def _session_error(self, response: httpx.Response) -> Exception:
        status = response.status_code
        vendor = Redactor(self.secret_values()).redact(" ".join(extract_vendor_message(response).split()))[:200]
        message = f"Apple DEP: GET /session answered {status}" + (f": {vendor}" if vendor else "")
        if status == 429 or status >= 500:
            return TransientError(message, status_code=status,
                                  retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if status in (400, 401, 403):
            return AuthenticationError(
                f"{message}. The server token was refused: it expires a year after it was downloaded, and a new "
                "download replaces the old one. Download a new server token for this MDM server in Apple Business "
                "Manager and enter its four values again", status_code=status)
        return PermanentError(message, status_code=status)


def _session_over(response: httpx.Response) -> bool:
    if response.status_code == 401:
        return True
    return response.status_code == 403 and "FORBIDDEN" in response.text[:200].upper()
