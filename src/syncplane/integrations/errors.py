"""How an integration failure is classified.

Every failure that crosses the connector boundary is one of three kinds, because each kind calls for a
different reaction: a transient error is retried with backoff, a permanent one fails the run at once, and a
policy violation (refused by Syncplane's own rules, such as an outbound URL that is not allowed) is never
retried. Messages must never contain a secret: build them from status codes and vendor error text only.
"""


class IntegrationError(Exception):
    kind = "permanent"

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class TransientError(IntegrationError):
    """Worth retrying later: 429, 502/503/504, timeouts, connection failures."""

    kind = "transient"


class ConnectFailure(TransientError):
    """The connection itself failed, so nothing reached the server. A `lasting` failure (refused, a TLS
    handshake that fails) is not helped by waiting a few seconds: it is not retried within the request, and a
    run gets a short retry rather than the long backoff meant for outages."""

    def __init__(self, message: str, *, lasting: bool = False):
        super().__init__(message)
        self.lasting = lasting


class PermanentError(IntegrationError):
    """Retrying will not help: bad credentials, 4xx, a response we cannot understand."""

    kind = "permanent"


class AuthenticationError(PermanentError):
    """The external system refused our credentials (after one token refresh, where there is one)."""


class ConfigurationError(PermanentError):
    """The integration's configuration or a secret reference cannot be used as it is."""


class PolicyViolation(IntegrationError):
    """Refused by Syncplane's own rules before anything was sent."""

    kind = "policy"


class RecordError(Exception):
    """One record cannot be mapped or validated; the run logs it with its raw payload and goes on."""
