"""What the Freshservice connectors share: one account, one base URL, one per-minute credit budget
(see shared/api-notes/freshservice-*.md).

Auth: the API key of an agent as the Basic user name, "X" as the password. The key is the secret `api_key`
credential of auth type "api_key" (as a Basic user name it would be kept and shown in plain text); it is
still sent as Basic, as Freshservice wants it.
Paging: `page` / `per_page` (max 100), following the Link header's rel="next"; its absence ends the list.
Rate limit: per minute and account-wide; every answer says what is left (X-Ratelimit-*), see `pace`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from syncplane.integrations.base import ConnectorContext
from syncplane.integrations.choices import AuthType
from syncplane.integrations.errors import ConfigurationError, PermanentError, RecordError
from syncplane.integrations.http import HttpClient
from syncplane.integrations.paging import PageNumberPaginator, link_header_next

VENDOR = "Freshservice"
MAX_PAGE_SIZE = 100  # per_page is capped at 100 by the API
BASIC_PASSWORD = "X"  # Freshservice ignores the password; "X" by convention
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


class FreshserviceKeyAuth(httpx.Auth):
    """`Authorization: Basic base64("<api key>:X")`. Both the key and the header value are secrets; the
    constant "X" is not (httpx's BasicAuth would have every "X" redacted from error messages)."""

    def __init__(self, api_key: str):
        self._api_key = api_key
        self._header = "Basic " + base64.b64encode(f"{api_key}:{BASIC_PASSWORD}".encode()).decode("ascii")

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = self._header
        yield request

    def secret_values(self) -> tuple[str, str]:
        return self._api_key, self._header.split(" ", 1)[1]


def freshservice_client(context: ConnectorContext, config: dict) -> HttpClient:
    """An HttpClient on the account, authenticated with the agent's API key."""
    if context.auth_type != AuthType.API_KEY:
        raise ConfigurationError("Freshservice takes an agent's API key: use auth type api_key")
    return HttpClient(
        context.base_url.rstrip("/"),
        auth=FreshserviceKeyAuth(context.credential("api_key")),
        timeout=config["timeout_seconds"],
        rate_limit_per_second=config["rate_limit_per_second"],
        secrets=context.secret_values(),
    )


def pace(response: httpx.Response, sleep: Callable[[float], Any]) -> None:
    """The limit is per minute and shared by the whole account: when few credits are left, spread the rest
    at the plan's sustained rate instead of running into a 429 with a long Retry-After."""
    total = header_int(response, "X-Ratelimit-Total")
    remaining = header_int(response, "X-Ratelimit-Remaining")
    used = header_int(response, "X-Ratelimit-Used-CurrentRequest") or 1
    if total and remaining is not None and remaining <= max(3 * used, total // 10):
        sleep(min(60.0, 60.0 * used / total))


class LinkedPages(PageNumberPaginator):
    """`page` numbers, the next one read from the Link header's rel="next"; no header (or no next) means the
    last page. A page is `(items, response)`."""

    def __init__(self, start: int = 1):
        super().__init__(start, vendor=VENDOR)

    def next_token(self, page: tuple[list, httpx.Response]) -> int | None:
        url = link_header_next(page[1])
        if url is None:
            return None
        number = httpx.URL(url).params.get("page", "")
        if not number.isdigit():
            raise PermanentError(f"{VENDOR}: the Link header's next page has no page number")
        return int(number)


def header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def parse_time(value: Any, name: str) -> datetime | None:
    """An ISO-8601 timestamp ("2024-05-18T07:01:44Z"); RecordError when it is something else."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _ISO.fullmatch(value):
        raise RecordError(f"field {name} is not an ISO-8601 timestamp: {str(value)[:40]!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise RecordError(f"field {name} is not an ISO-8601 timestamp: {value[:40]!r}") from None
