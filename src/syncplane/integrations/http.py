"""HttpClient: the one way connectors talk HTTP.

It owns what every connector would otherwise get subtly wrong: the outbound URL policy (no other host,
not even through a Link header or a redirect), timeouts, a client-side rate limit, retries decided in one
place (429 and 5xx and network failures are transient, other 4xx are permanent), the server's Retry-After
hint, the correlation id on every request, and error messages that carry the vendor's reason but never a
secret.
"""

import email.utils
import json as jsonlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx
import orjson

from syncplane import __version__
from syncplane.core.context import CORRELATION_HEADER, get_correlation_id
from syncplane.integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectFailure,
    IntegrationError,
    PermanentError,
    PolicyViolation,
    TransientError,
)
from syncplane.integrations.secrets import Redactor, mask_url
from syncplane.integrations.urls_policy import check_outbound_url, connectable_addresses

logger = logging.getLogger("syncplane.http")


class _LibraryLogFilter(logging.Filter):
    """Keeps httpx's and httpcore's own log lines free of secrets, whatever the logging configuration.

    httpx logs every request URL at INFO, query string included (some APIs take a key there); httpcore
    logs response headers at DEBUG (Set-Cookie, tokens).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "httpx" and isinstance(record.args, tuple):
            record.args = tuple(mask_url(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        elif isinstance(record.msg, str) and record.msg.startswith("receive_response_headers.complete"):
            record.msg, record.args = "receive_response_headers.complete", ()
        return True


for _name in ("httpx", "httpcore.http11", "httpcore.http2"):
    _library_logger = logging.getLogger(_name)
    if not any(isinstance(f, _LibraryLogFilter) for f in _library_logger.filters):
        _library_logger.addFilter(_LibraryLogFilter())

# 500 is retried too: vendors (ServiceNow among them) answer 500 for overload and lock timeouts as often
# as for real bugs, and a bounded number of retries costs little when it is a bug.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses that say the request was not processed, so even a POST may be sent again.
NOT_PROCESSED_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3
VENDOR_MESSAGE_MAX = 300


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is not a wait
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _join(*parts: Any) -> str:
    return ": ".join(str(p).strip() for p in parts if p not in (None, "") and str(p).strip())


def _messages(items: Any) -> list[str]:
    if isinstance(items, dict):
        # Jira: {"errors": {"field": "message"}}
        return [f"{k}: {v}" for k, v in items.items()]
    if not isinstance(items, list):
        return [str(items)] if items else []
    out = []
    for item in items:
        if isinstance(item, dict):
            text = _join(
                item.get("field"),
                item.get("title") or item.get("message") or item.get("detail") or item.get("code"),
            )
            out.append(text or jsonlib.dumps(item)[:100])
        elif item:
            out.append(str(item))
    return out


def extract_vendor_message(response: httpx.Response) -> str:
    """The vendor's reason from the common error envelopes, or "" when there is none worth showing."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        ctype = response.headers.get("content-type", "")
        # Short plain-text errors are useful; HTML error pages are noise.
        return response.text.strip() if ctype.startswith("text/plain") else ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):  # ServiceNow, Graph: {"error": {"message", "detail"|"code"}}
        message, detail = error.get("message"), error.get("detail")
        return _join(message, detail if detail != message else None) or _join(error.get("code"))
    parts = []
    if isinstance(error, str):  # OAuth: {"error", "error_description"}
        parts.append(_join(error, body.get("error_description")))
    elif body.get("error_description"):
        parts.append(str(body["error_description"]))
    # "errorMessage": Jira Service Management's servicedeskapi ({"errorMessage", "i18nErrorMessage"}).
    for key in ("message", "title", "description", "detail", "errorMessage"):
        if isinstance(body.get(key), str) and body[key].strip():
            parts.append(body[key])
            break
    parts.extend(_messages(body.get("errorMessages")))  # Jira
    parts.extend(_messages(body.get("errors")))
    return "; ".join(p.strip() for p in parts if p and p.strip())


def _causes(exc: BaseException):
    """The exception and what it was raised from: httpx wraps httpcore's error, which wraps the OSError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def describe_connect_failure(exc: BaseException) -> tuple[str, bool]:
    """(why a connection could not be made, in words a person can act on; whether waiting will not help)."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS handshake failed: {cause.verify_message or cause.reason}", True
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or str(cause)
            if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNEXPECTED_EOF_WHILE_READING",
                          "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"):
                return ("TLS handshake failed: the server does not speak TLS on this port "
                        "(is it an http:// address?)"), True
            return f"TLS handshake failed ({reason})", True
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (nothing listens on that port: check the host and port)", True
        if isinstance(cause, httpx.ConnectTimeout | httpcore.ConnectTimeout | socket.timeout | TimeoutError):
            return "timed out while connecting", False
        if isinstance(cause, socket.gaierror) or "cannot resolve host" in str(cause):
            return "DNS: the host name does not resolve", False
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:], False
    return exc.__class__.__name__, False


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default


def _unbind(response: httpx.Response) -> None:
    """End the reference cycle httpx makes between a response and its stream (the stream points back at the
    response to set `elapsed`), once the body is read. Only the cyclic garbage collector frees such a pair, and
    until it ran every page's body and the JSON parsed from it stayed alive: a long sync's peak memory grew with
    its length (docs/performance.md). A plain stream of the same body has no way back."""
    response.stream = httpx.ByteStream(response.content)


class TokenBucket:
    """A thread-safe client-side rate limit: at most ``rate`` requests per second, no bursts.

    Callers reserve their slot under the lock and sleep outside it, so concurrent callers queue up in order.
    """

    def __init__(
        self, rate: float, *, sleep: Callable[[float], None], clock: Callable[[], float] = time.monotonic
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = 1.0
        self._updated = clock()

    def acquire(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(1.0, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class PolicyCheckedBackend(httpcore.SyncBackend):
    """Opens TCP connections only to addresses the outbound URL policy allows, resolved at connect time.

    The base URL is checked when the client is built, but httpx resolves the host again for every new
    connection; without this a DNS answer that changes in between (DNS rebinding) could reach the metadata
    service or the private network. TLS still verifies the certificate against the host name, not the address.
    """

    def __init__(self, allow_insecure: bool | None = None):
        self.allow_insecure = allow_insecure

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = connectable_addresses(host, port, allow_insecure=self.allow_insecure)
        except ConfigurationError as exc:  # the name does not resolve now: a network failure, worth a retry
            raise httpcore.ConnectError(str(exc)) from None
        for index, address in enumerate(addresses):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                if index == len(addresses) - 1:
                    raise
        raise httpcore.ConnectError(f"{host} has no address")  # pragma: no cover - _resolve returns at least one


def ca_file_context(ca_file: str) -> ssl.SSLContext | bool:
    """What to verify TLS with: the system's CAs (True), or those of the operator's PEM bundle (`ca_file`, for a
    server with a private or self-signed certificate). Verification is never switched off."""
    if not ca_file:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"ca_file: cannot read a PEM CA bundle from {ca_file} ({exc.__class__.__name__})") \
            from None


def policy_checked_transport(
    limits: httpx.Limits, allow_insecure: bool | None, verify: ssl.SSLContext | bool = True
) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(limits=limits, verify=verify)
    # httpx has no argument for a network backend; its connection pool takes one and uses it for every new
    # connection. httpx and httpcore are pinned in requirements.lock, and a test connects through this.
    transport._pool._network_backend = PolicyCheckedBackend(allow_insecure)
    return transport


class HttpClient:
    """A pooled HTTP client bound to one base URL. Paths are appended to the base URL's path."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        headers: dict | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        retry_after_max: float = 300.0,
        rate_limit_per_second: float | None = None,
        allow_insecure: bool | None = None,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,  # an SSLContext with the operator's CA file (self-signed servers)
    ):
        check_outbound_url(base_url, allow_insecure=allow_insecure)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = httpx.URL(base_url)
        self._origin = _origin(self.base_url)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self._sleep = sleep
        self._auth = auth
        self._redactor = Redactor(secrets)
        self._bucket = TokenBucket(rate_limit_per_second, sleep=sleep) if rate_limit_per_second else None
        self._stats_lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0}
        default_headers = {"Accept": "application/json", "User-Agent": f"Syncplane/{__version__}"}
        default_headers.update(headers or {})
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            headers=default_headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=limits,
            # Redirects are handled here, so that one to another host can be refused.
            follow_redirects=False,
            # The hook also runs for requests an auth flow makes (OAuth token requests).
            event_hooks={"request": [self._add_correlation_id]},
            transport=transport or policy_checked_transport(limits, allow_insecure, verify),
        )

    # --- plumbing -----------------------------------------------------------------------------------

    @staticmethod
    def _add_correlation_id(request: httpx.Request) -> None:
        correlation_id = get_correlation_id()
        if correlation_id:
            request.headers[CORRELATION_HEADER] = correlation_id

    def redact(self, text: str) -> str:
        text = self._redactor.redact(text)
        # Auth objects know their current credentials (an OAuth access token changes over time).
        live = getattr(self._auth, "secret_values", None)
        return Redactor(live()).redact(text) if callable(live) else text

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _check_url(self, url_or_path: str) -> httpx.URL:
        url = httpx.URL(url_or_path)
        if not (url.scheme or url.host):
            return url  # a path: httpx appends it to the base URL
        if not (url.scheme and url.host):
            raise PolicyViolation(f"Refused URL {mask_url(url_or_path)}: give a path or an absolute URL")
        if _origin(url) != self._origin:
            raise PolicyViolation(
                f"Refused URL {mask_url(url_or_path)}: only {self._origin[0]}://{self._origin[1]}"
                f"{':' + str(self._origin[2]) if self._origin[2] else ''} may be called by this integration"
            )
        if url.userinfo:
            raise PolicyViolation("Refused URL: it contains a user name or password")
        return url

    def _log(self, request: httpx.Request, status: int | str, started: float, attempt: int) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        url = mask_url(str(request.url))
        logger.debug(
            "%s %s -> %s in %.1f ms (attempt %d)",
            request.method,
            url,
            status,
            duration_ms,
            attempt,
            extra={
                "http_method": request.method,
                "http_url": url,
                "http_status": status,
                "duration_ms": duration_ms,
                "attempt": attempt,
            },
        )

    def _describe(self, request: httpx.Request) -> str:
        return f"{request.method} {request.url.path}"

    def _status_error(self, request: httpx.Request, response: httpx.Response) -> IntegrationError:
        status = response.status_code
        vendor = self.redact(" ".join(extract_vendor_message(response).split()))
        if len(vendor) > VENDOR_MESSAGE_MAX:
            vendor = vendor[: VENDOR_MESSAGE_MAX - 3] + "..."
        message = self.redact(
            f"{self._describe(request)} answered {status}" + (f": {vendor}" if vendor else "")
        )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in RETRYABLE_STATUSES:
            return TransientError(message, status_code=status, retry_after=retry_after)
        if status in (401, 403):
            return AuthenticationError(message, status_code=status)
        return PermanentError(message, status_code=status)

    def _connect_failure(self, request: httpx.Request, exc: Exception) -> ConnectFailure:
        _scheme, host, port = _origin(request.url)
        why, lasting = describe_connect_failure(exc)
        return ConnectFailure(
            self.redact(f"{self._describe(request)} failed: cannot connect to {host}:{port}: {why}"), lasting=lasting
        )

    def _malformed_json(self, request: httpx.Request, response: httpx.Response) -> TransientError | None:
        """Parse a JSON answer once, here, so that a truncated or garbage body is retried like any other
        transient fault (only where the request may be repeated). The parsed body is kept for `json()`."""
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not response.content or (ctype != "application/json" and not ctype.endswith("+json")):
            return None
        try:
            # orjson parses a large page several times faster than the standard library.
            response.parsed_json = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            return TransientError(
                f"{self._describe(request)} answered malformed JSON (a body cut short or not JSON: {exc})",
                status_code=response.status_code,
            )
        return None

    def _backoff(self, retry_index: int) -> float:
        # Full jitter: spreads the retries of many workers hit by the same outage.
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2**retry_index))

    # --- sending ------------------------------------------------------------------------------------

    def _send(self, request: httpx.Request, expected: Iterable[int], idempotent: bool | None) -> httpx.Response:
        """Send with retries. Returns any response that is not a retryable failure."""
        may_repeat = request.method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        for attempt in range(1, self.max_attempts + 1):
            if self._bucket:
                self._bucket.acquire()
            self._count("requests")
            started = time.monotonic()
            try:
                response = self._client.send(request)
            except TransientError as exc:  # raised by an auth flow (token endpoint 429/5xx): nothing sent
                self._log(request, "token-error", started, attempt)
                error = exc
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The request never reached the server, so repeating it is safe for any method; but a refused
                # connection or a failed TLS handshake will not heal in the seconds a retry waits.
                self._log(request, exc.__class__.__name__, started, attempt)
                error = self._connect_failure(request, exc)
                if error.lasting:
                    raise error from None
            except httpx.PoolTimeout as exc:
                self._log(request, exc.__class__.__name__, started, attempt)
                error = TransientError(f"{self._describe(request)} failed: no free connection in the pool")
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                raise PermanentError(f"{self._describe(request)} failed: {exc.__class__.__name__}") from None
            except httpx.TransportError as exc:  # read/write timeouts, dropped connections
                self._log(request, exc.__class__.__name__, started, attempt)
                error = TransientError(f"{self._describe(request)} failed: {exc.__class__.__name__}")
                if not may_repeat:
                    # The server may have acted on it; the outbox decides, with its idempotency key.
                    raise error from None
            else:
                _unbind(response)
                self._log(request, response.status_code, started, attempt)
                status = response.status_code
                if status in expected and 200 <= status < 300 and may_repeat:
                    error = self._malformed_json(request, response)
                    if error is None:
                        return response
                    response.close()
                elif status not in RETRYABLE_STATUSES or status in expected:
                    return response
                else:
                    error = self._status_error(request, response)
                    response.close()
                    if not may_repeat and status not in NOT_PROCESSED_STATUSES:
                        raise error
            if attempt == self.max_attempts:
                raise error
            if error.retry_after is not None:
                if error.retry_after > self.retry_after_max:
                    # Too long to block a worker: the task layer reschedules with error.retry_after.
                    raise error
                wait = error.retry_after
            else:
                wait = self._backoff(attempt - 1)
            self._count("retries")
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def request(
        self,
        method: str,
        url_or_path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        content: bytes | None = None,
        headers: dict | None = None,
        expected: Iterable[int] = (200,),
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send a request and return a response whose status is in ``expected``.

        ``idempotent=True`` marks a POST that only reads (a search API) as safe to repeat on any transient
        failure; by default only GET/HEAD/PUT/DELETE/OPTIONS are.

        Raises PolicyViolation (URL refused), TransientError (after the retries), AuthenticationError
        (401/403) or PermanentError (other statuses, refused redirects).
        """
        expected = tuple(expected)
        url = self._check_url(url_or_path)
        request = self._client.build_request(
            method.upper(), url, params=params, json=json, data=data, content=content, headers=headers
        )
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(request, expected, idempotent)
            if response.status_code in expected:
                return response
            if response.status_code not in REDIRECT_STATUSES:
                break
            request = self._redirected(request, response)
        else:
            raise PermanentError(f"{self._describe(request)}: more than {MAX_REDIRECTS} redirects")
        if 200 <= response.status_code < 300:
            raise PermanentError(
                f"{self._describe(request)} answered {response.status_code}, expected one of {expected}",
                status_code=response.status_code,
            )
        raise self._status_error(request, response)

    def _redirected(self, request: httpx.Request, response: httpx.Response) -> httpx.Request:
        location = response.headers.get("Location")
        if not location:
            raise PermanentError(
                f"{self._describe(request)} answered {response.status_code} without Location"
            )
        target = request.url.join(location)
        if _origin(target) != self._origin or target.userinfo:
            raise PermanentError(
                f"{self._describe(request)} redirect to {mask_url(str(target))} refused: another host"
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        if response.status_code in (307, 308):
            return self._client.build_request(
                request.method, target, content=request.content, headers=headers
            )
        # 301/302/303: the follow-up is a GET without a body, as browsers do.
        headers.pop("content-type", None)
        headers.pop("Content-Type", None)
        return self._client.build_request("GET", target, headers=headers)

    def get(self, url_or_path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url_or_path, **kwargs)

    def post(self, url_or_path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url_or_path, **kwargs)

    def get_json(
        self,
        url_or_path: str,
        *,
        params: Any = None,
        headers: dict | None = None,
        expected: Iterable[int] = (200,),
    ) -> Any:
        """GET and parse JSON (see `json`)."""
        return self.json(self.get(url_or_path, params=params, headers=headers, expected=expected))

    def require_json(self, response: httpx.Response) -> None:
        """A non-JSON answer (a sleeping ServiceNow instance's HTML page with 200) is transient."""
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise TransientError(
                f"{self._describe(response.request)} expected JSON, got {ctype or 'no content type'}",
                status_code=response.status_code,
            )

    def json(self, response: httpx.Response) -> Any:
        """The JSON body of a response; connectors that also need the headers (paging) call this on the
        response they have."""
        self.require_json(response)
        if hasattr(response, "parsed_json"):  # parsed (and found whole) when it arrived
            return response.parsed_json
        what = self._describe(response.request)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            # Seen when a server cuts a large page short; usually fine on the next try.
            raise TransientError(
                f"{what} answered malformed JSON", status_code=response.status_code
            ) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
