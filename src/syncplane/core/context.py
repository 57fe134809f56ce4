"""The correlation id of the work in progress.

One id follows a piece of work everywhere: the HTTP request that started it, the Celery task that runs it,
every log line and every outbound HTTP request. It lives in a context variable so threads and tasks each see
their own.
"""

import contextvars
import re
import uuid

CORRELATION_HEADER = "X-Correlation-ID"

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

# A caller may send its own id; accept only a sane token so it cannot inject into logs or headers.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def clean_correlation_id(value: str | None) -> str:
    """The caller's id when it is acceptable, a fresh one otherwise."""
    if value and _VALID_ID.match(value):
        return value
    return new_correlation_id()


def get_correlation_id() -> str | None:
    return _correlation_id.get()


def set_correlation_id(value: str | None) -> contextvars.Token:
    return _correlation_id.set(value)


def reset_correlation_id(token: contextvars.Token) -> None:
    _correlation_id.reset(token)
