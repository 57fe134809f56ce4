"""How connectors authenticate: small httpx.Auth objects, one per scheme.

Each exposes ``secret_values()`` so HttpClient can redact the credentials it is currently sending from
error messages. OAuth2Auth does the token dance that every OAuth vendor needs: a form-encoded token
request (ServiceNow rejects JSON there), a cached token refreshed a little before it expires, the
refresh_token grant when there is one, and one refresh-and-retry when the API says 401 anyway.
"""

import base64
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass

import httpx

from syncplane.integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    PermanentError,
    TransientError,
)
from syncplane.integrations.http import extract_vendor_message, parse_retry_after
from syncplane.integrations.secrets import Redactor
from syncplane.integrations.urls_policy import check_outbound_url


class BasicAuth(httpx.BasicAuth):
    def __init__(self, username: str, password: str):
        super().__init__(username, password)
        self._password = password

    def secret_values(self) -> Iterable[str]:
        # The header's credential is base64(username:password); base64(password) alone is not inside it.
        return (self._password, self._auth_header.split(" ", 1)[1])


def basic_auth(username: str, password: str) -> BasicAuth:
    return BasicAuth(username, password)


class BearerTokenAuth(httpx.Auth):
    """``Authorization: <scheme> <token>`` (Bearer; also Splunk HEC's "Splunk", Snyk's "token")."""

    def __init__(self, token: str, scheme: str = "Bearer"):
        self._value = f"{scheme} {token}"
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._value
        yield request

    def secret_values(self) -> Iterable[str]:
        return (self._token,)


class ApiKeyHeaderAuth(httpx.Auth):
    """An API key in a header of its own (Datadog's DD-API-KEY, for instance)."""

    def __init__(self, header: str, value: str):
        self.header = header
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.header] = self._value
        yield request

    def secret_values(self) -> Iterable[str]:
        return (self._value,)


@dataclass
class _Token:
    access_token: str
    expires_at: float


class LockedFlowAuth(httpx.Auth):
    """An auth whose flow holds a threading lock while it asks for a token or a session (OAuth2Auth, Apple's
    DEP session): for the synchronous HttpClient only, and the flow is closed as soon as a send fails."""

    requires_request_body = True  # the request may be sent twice (after a 401 or a lost session)
    requires_response_body = True  # the token or session answer is parsed
    lock_timeout = 120.0

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # httpx's default wrapper leaves the inner generator to the garbage collector when a send fails;
        # closing it here releases the lock at once.
        request.read()
        flow = self.auth_flow(request)
        try:
            outgoing = next(flow)
            while True:
                response = yield outgoing
                response.read()
                try:
                    outgoing = flow.send(response)
                except StopIteration:
                    return
        finally:
            flow.close()

    async def async_auth_flow(self, request):  # pragma: no cover - guard
        raise RuntimeError(f"{type(self).__name__} is for the synchronous HttpClient")
        yield request


class OAuth2Auth(LockedFlowAuth):
    """OAuth 2.0 client credentials or password grant, with a cached, refreshed access token.

    Sync clients only: the token cache is guarded by a threading lock held while the token request is in
    flight, so concurrent requests wait for one token instead of each asking for their own.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        grant: str = "client_credentials",
        username: str | None = None,
        password: str | None = None,
        scope: str | None = None,
        extra_params: dict | None = None,
        token_in_body: bool = True,
        early_refresh_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
        allow_insecure: bool | None = None,
    ):
        if grant not in ("client_credentials", "password"):
            raise ConfigurationError(
                f"OAuth grant {grant!r} is not supported (client_credentials or password)"
            )
        if grant == "password" and not (username and password):
            raise ConfigurationError("The OAuth password grant needs a user name and a password")
        check_outbound_url(token_url, allow_insecure=allow_insecure)
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.grant = grant
        self.username = username
        self._password = password
        self.scope = scope
        self.extra_params = dict(extra_params or {})
        self.token_in_body = token_in_body
        self.early_refresh_seconds = early_refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._refresh_token: str | None = None
        self.token_requests = 0

    def secret_values(self) -> Iterable[str]:
        values = [self._client_secret, self._password, self._refresh_token]
        if not self.token_in_body:  # then client_id:client_secret travels as a Basic credential
            pair = f"{self.client_id}:{self._client_secret}".encode()
            values.append(base64.b64encode(pair).decode())
        if self._token:
            values.append(self._token.access_token)
        return [v for v in values if v]

    # --- the flow -----------------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        access_token = yield from self._valid_token()
        request.headers["Authorization"] = f"Bearer {access_token}"
        response = yield request
        if response.status_code != 401:
            return
        # A token can be revoked before it expires: refresh once, retry once. A second 401 is returned
        # as it is and becomes an AuthenticationError in HttpClient.
        access_token = yield from self._valid_token(rejected=access_token)
        request.headers["Authorization"] = f"Bearer {access_token}"
        yield request

    def _valid_token(self, rejected: str | None = None) -> Generator[httpx.Request, httpx.Response, str]:
        if not self._lock.acquire(timeout=self.lock_timeout):
            raise TransientError("Timed out waiting for another thread to fetch an OAuth token")
        try:
            token = self._token
            if token and token.access_token != rejected and self._clock() < token.expires_at:
                return token.access_token
            if self._refresh_token:
                response = yield self._token_request(
                    {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
                )
                if response.status_code == 200:
                    return self._store(response)
                if response.status_code not in (400, 401):
                    raise self._token_error(response)
                # The refresh token expired or was revoked: start over with the grant itself.
                self._refresh_token = None
            response = yield self._token_request(self._grant_form())
            if response.status_code != 200:
                raise self._token_error(response)
            return self._store(response)
        finally:
            self._lock.release()

    # --- token endpoint -----------------------------------------------------------------------------

    def _grant_form(self) -> dict:
        form = {"grant_type": self.grant}
        if self.grant == "password":
            form.update(username=self.username, password=self._password)
        if self.scope:
            form["scope"] = self.scope
        form.update(self.extra_params)
        return form

    def _token_request(self, form: dict) -> httpx.Request:
        self.token_requests += 1
        headers = {"Accept": "application/json"}
        if self.token_in_body:
            form = {**form, "client_id": self.client_id, "client_secret": self._client_secret}
        else:
            # RFC 6749 asks to form-encode id and secret first; servers in the wild mostly do not decode,
            # so they are sent as they are, like every common client library does.
            pair = f"{self.client_id}:{self._client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        # data= makes an application/x-www-form-urlencoded body, which is what token endpoints accept.
        return httpx.Request("POST", self.token_url, data=form, headers=headers)

    def _store(self, response: httpx.Response) -> str:
        ctype = response.headers.get("content-type", "").split(";")[0].strip()
        try:
            payload = response.json()
        except (ValueError, UnicodeDecodeError):
            raise TransientError(
                f"OAuth token endpoint answered 200 with {ctype or 'no content type'}, not JSON"
            )
        access_token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(access_token, str) or not access_token:
            raise AuthenticationError("OAuth token endpoint answered without an access_token")
        try:
            lifetime = float(payload.get("expires_in", 3600))  # Entra v1 sends it as a string
        except (TypeError, ValueError):
            lifetime = 3600.0
        # Refresh early, but never so early that a short-lived token is refreshed on every request.
        margin = min(self.early_refresh_seconds, lifetime / 2)
        self._token = _Token(access_token, self._clock() + lifetime - margin)
        # A refresh grant may answer without a new refresh token (ServiceNow does): keep the old one.
        self._refresh_token = payload.get("refresh_token") or self._refresh_token
        return access_token

    def _token_error(self, response: httpx.Response) -> Exception:
        status = response.status_code
        redactor = Redactor(self.secret_values())
        vendor = redactor.redact(" ".join(extract_vendor_message(response).split()))[:300]
        message = f"OAuth token request answered {status}" + (f": {vendor}" if vendor else "")
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return TransientError(message, status_code=status, retry_after=retry_after)
        if status in (400, 401, 403):
            return AuthenticationError(message, status_code=status)
        return PermanentError(message, status_code=status)
